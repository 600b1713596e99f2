/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: arbitrary bytes as a deployd.conf. The parser must accept or refuse with a
 * message naming a line, never crash or leak; whatever it accepts keeps every string set and
 * passes through validation without crashing.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "central/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct deployd_config c;
	struct cd_error err = {};
	char *text;
	int r;

	if (size > 65536)
		return 0;
	text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (deployd_config_init(&c) < 0) {
		free(text);
		return 0;
	}
	r = deployd_config_parse_text(&c, "fuzz.conf", text, &err);
	if (r < 0) {
		if (r != -ENOMEM && !strstr(err.msg, "fuzz.conf:"))
			abort();
	} else {
		if (!c.region || !c.zone || !c.state_dir || !c.listen || !c.log_level || !c.roles)
			abort();
		cd_error_reset(&err);
		(void)deployd_config_validate(&c, &err);
	}
	deployd_config_release(&c);
	free(text);
	return 0;
}
