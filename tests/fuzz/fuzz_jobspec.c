/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer target: arbitrary bytes through api_json_parse() + the JobSpec decoder. Whatever is
 * accepted must survive to_json → from_json unchanged (same canonical text and hash); whatever
 * is refused must give a problem that serialises.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/jobspec.h"
#include "api/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_refusal(struct problem *p)
{
	char *dump;

	if (p->oom)
		return;
	if (p->n_errors == 0 || (p->status != 400 && p->status != 413 && p->status != 422))
		abort();
	dump = problem_to_string(p);
	if (!dump)
		abort(); /* a message that is not valid UTF-8 */
	free(dump);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jobspec *a = NULL, *b = NULL;
	char *ta = NULL, *tb = NULL, ha[JOBSPEC_HASH_LEN + 1], hb[JOBSPEC_HASH_LEN + 1];
	struct problem p;
	int r;

	problem_init(&p, 0, NULL, NULL);
	r = jobspec_from_string((const char *)data, size, &a, &p);
	if (r < 0) {
		if (r != -ENOMEM)
			check_refusal(&p);
		problem_release(&p);
		return 0;
	}
	problem_release(&p);

	if (jobspec_to_string(a, &ta) < 0)
		abort();
	problem_init(&p, 0, NULL, NULL);
	if (jobspec_from_string(ta, strlen(ta), &b, &p) < 0)
		abort(); /* our own canonical output must be accepted */
	problem_release(&p);
	if (jobspec_to_string(b, &tb) < 0 || strcmp(ta, tb) != 0 || !jobspec_equal(a, b))
		abort();
	if (jobspec_hash(a, ha) < 0 || jobspec_hash(b, hb) < 0 || strcmp(ha, hb) != 0)
		abort();
	free(ta);
	free(tb);
	jobspec_free(a);
	jobspec_free(b);
	return 0;
}
