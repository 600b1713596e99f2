/* The part of FooService its unit tests cover. */
#pragma once

#include <stdbool.h>

/* What GET / answers (without the zone). */
const char *greeting(void);
/* What GET /healthz reports. */
bool healthy(void);
