#include "greeting.h"

const char *greeting(void)
{
	return "Hello from FooService v1";
}

bool healthy(void)
{
	return true;
}
