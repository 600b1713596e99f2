/* SPDX-License-Identifier: Apache-2.0 */
/*
 * netns.h — network set-up of a task's network namespace, with libnl-route.
 *   none   = own netns, only lo, up — brought up by the task's init itself with one
 *            ioctl(SIOCSIFFLAGS) from inside (launch.c), which needs no netlink socket and no
 *            setns() here;
 *   bridge = own netns with lo, plus a veth pair: the host end enslaved to a host bridge (created
 *            with the subnet's first address when missing), the task end named eth0 with an
 *            address leased from the subnet and a default route via the bridge;
 *   host   = no netns at all (nothing to do here).
 * Owns the host-side veth, the address leases (one file per leased address in ipam_dir, created
 * with O_EXCL so concurrent launches never share an address) and nothing inside the task.
 * The bridge is shared by all tasks and never removed here.
 * Errors: -errno (libnl NLE_* codes are mapped here) plus a message.
 * Thread-safety: functions enter the target netns with setns() on the calling thread only and
 * restore it before returning; safe to call from one thread of a multi-threaded daemon.
 */
#pragma once

#include <net/if.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"

enum sandbox_net_mode {
	SANDBOX_NET_NONE, /* default: isolated, loopback only */
	SANDBOX_NET_HOST,
	SANDBOX_NET_BRIDGE,
};

#define NETNS_DEFAULT_BRIDGE "cdbr0"
#define NETNS_DEFAULT_SUBNET "10.88.0.0/24"
#define NETNS_DEFAULT_IPAM_DIR "/run/codedeploy/ipam"

struct netns_bridge_config {
	const char *bridge;   /* host bridge name; NULL = NETNS_DEFAULT_BRIDGE */
	const char *subnet;   /* IPv4 CIDR, prefix 8..30; NULL = NETNS_DEFAULT_SUBNET */
	const char *ipam_dir; /* lease directory; NULL = NETNS_DEFAULT_IPAM_DIR */
	/* No default route: the task reaches its subnet only (other tasks on the bridge, the
	 * gateway address), never the host's other addresses or anything beyond. Without it the
	 * default route goes via the gateway (egress needs forwarding/NAT on the host). */
	bool isolate;
};

/* What bridge mode set up; kept by the caller to tear it down (and persisted for re-adoption:
 * every field is plain data). */
struct netns_lease {
	char host_ifname[IFNAMSIZ]; /* "" when no veth was created */
	char bridge[IFNAMSIZ];
	char ipam_dir[256];
	struct in_addr addr; /* the task's address */
	struct in_addr gateway;
	uint8_t prefix;
};

/* "none" | "host" | "bridge" → mode; -EINVAL otherwise. */
int netns_mode_from_string(const char *s, enum sandbox_net_mode *ret);
const char *netns_mode_to_string(enum sandbox_net_mode mode);
/* Parse "a.b.c.d/p" (host bits must be zero, 8 <= p <= 30). -EINVAL otherwise. */
int netns_parse_subnet(const char *s, struct in_addr *ret_net, uint8_t *ret_prefix);
/* The host veth name for a task id: "cdv" + 12 hex digits of a hash of the id. */
void netns_host_ifname(const char *task_id, char buf[static IFNAMSIZ]);

/*
 * Bridge mode for the task whose netns is netns_fd and whose init is pid (the veth peer is
 * created directly inside that namespace). On failure everything this call created is removed
 * (veth, lease). -EEXIST when the host veth name is taken, -ENOSPC when the subnet has no free
 * address.
 */
int netns_setup_bridge(int netns_fd, pid_t pid, const char *task_id,
		       const struct netns_bridge_config *cfg, struct netns_lease *ret,
		       struct cd_error *err);
/* Delete the host veth (its peer goes with it) and release the lease. Idempotent. */
int netns_teardown(const struct netns_lease *lease, struct cd_error *err);
/* Remove leases taken in this network namespace whose host veth no longer exists (leftovers of
 * a crash). Leases of other namespaces (another taskd in its own netns, seen from a deployd
 * builder) are left alone: their veths are invisible from here. Returns how many. */
int netns_gc(const char *ipam_dir);
