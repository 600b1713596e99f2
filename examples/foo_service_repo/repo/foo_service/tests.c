/* FooService unit tests: run by the pipeline's "Service Tests" stage; exit status decides. */
#include <stdio.h>
#include <string.h>

#include "greeting.h"

static int failures;

static void check(int ok, const char *what)
{
	printf("%s - %s\n", ok ? "ok" : "not ok", what);
	if (!ok)
		failures++;
}

int main(void)
{
	check(strncmp(greeting(), "Hello", 5) == 0, "greeting starts with Hello");
	check(strstr(greeting(), "FooService") != NULL, "greeting names the service");
	printf("%d test(s) failed\n", failures);
	return failures ? 1 : 0;
}
