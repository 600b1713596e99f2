/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The role table of deployd. A role module defines `const struct deployd_role
 * deployd_role_<name>` and adds one line below (the pipelines role: &deployd_role_pipelines,
 * the builder: &deployd_role_builder). Order = start order; stop runs in reverse.
 */
#include "central/deployd.h"

/* central/pipeline_role.c */
extern const struct deployd_role deployd_role_pipelines;
extern const struct deployd_role deployd_role_builder;

static const struct deployd_role *const roles[] = {
	&deployd_role_artifacts,
	&deployd_role_cluster,
	&deployd_role_pipelines,
	&deployd_role_builder,
};

size_t deployd_roles_known(const struct deployd_role **ret, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]) && n < max; i++)
		ret[n++] = roles[i];
	return n;
}
