/* SPDX-License-Identifier: Apache-2.0 */
#include "sandbox/netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fs.h"
#include "lib/str.h"

/* libnl's NLE_* to -errno, once, here. */
static int map_nl(int r)
{
	if (r >= 0)
		return r;
	switch (-r) {
	case NLE_EXIST:
		return -EEXIST;
	case NLE_OBJ_NOTFOUND:
	case NLE_NODEV:
		return -ENODEV;
	case NLE_PERM:
		return -EPERM;
	case NLE_NOACCESS:
		return -EACCES;
	case NLE_NOMEM:
		return -ENOMEM;
	case NLE_INVAL:
	case NLE_MSGTYPE_NOSUPPORT:
		return -EINVAL;
	case NLE_BUSY:
		return -EBUSY;
	case NLE_RANGE:
		return -ERANGE;
	case NLE_AGAIN:
		return -EAGAIN;
	case NLE_OPNOTSUPP:
		return -EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return -EAFNOSUPPORT;
	default:
		return -EIO;
	}
}

int netns_mode_from_string(const char *s, enum sandbox_net_mode *ret)
{
	if (!s)
		return -EINVAL;
	if (streq(s, "none"))
		*ret = SANDBOX_NET_NONE;
	else if (streq(s, "host"))
		*ret = SANDBOX_NET_HOST;
	else if (streq(s, "bridge"))
		*ret = SANDBOX_NET_BRIDGE;
	else
		return -EINVAL;
	return 0;
}

const char *netns_mode_to_string(enum sandbox_net_mode mode)
{
	switch (mode) {
	case SANDBOX_NET_HOST:
		return "host";
	case SANDBOX_NET_BRIDGE:
		return "bridge";
	default:
		return "none";
	}
}

int netns_parse_subnet(const char *s, struct in_addr *ret_net, uint8_t *ret_prefix)
{
	char buf[INET_ADDRSTRLEN + 4];
	const char *slash;
	struct in_addr a;
	unsigned prefix;
	uint32_t mask;

	if (!s || strlen(s) >= sizeof(buf))
		return -EINVAL;
	slash = strchr(s, '/');
	if (!slash || (size_t)(slash - s) >= INET_ADDRSTRLEN)
		return -EINVAL;
	memcpy(buf, s, slash - s);
	buf[slash - s] = '\0';
	if (inet_pton(AF_INET, buf, &a) != 1)
		return -EINVAL;
	if (parse_uint(slash + 1, 32, &prefix) < 0 || prefix < 8 || prefix > 30)
		return -EINVAL;
	mask = prefix ? ~UINT32_C(0) << (32 - prefix) : 0;
	if (ntohl(a.s_addr) & ~mask)
		return -EINVAL;
	*ret_net = a;
	*ret_prefix = (uint8_t)prefix;
	return 0;
}

void netns_host_ifname(const char *task_id, char buf[static IFNAMSIZ])
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (const char *p = task_id; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ULL;
	}
	snprintf(buf, IFNAMSIZ, "cdv%012llx", (unsigned long long)(h & 0xffffffffffffULL));
}

static void nl_socket_freep(struct nl_sock **s)
{
	if (*s)
		nl_socket_free(*s);
}
static void rtnl_link_putp(struct rtnl_link **l)
{
	if (*l)
		rtnl_link_put(*l);
}
static void rtnl_addr_putp(struct rtnl_addr **a)
{
	if (*a)
		rtnl_addr_put(*a);
}
static void nl_addr_putp(struct nl_addr **a)
{
	if (*a)
		nl_addr_put(*a);
}

static int nl_open(struct nl_sock **ret)
{
	struct nl_sock *s = nl_socket_alloc();
	int r;

	if (!s)
		return -ENOMEM;
	r = nl_connect(s, NETLINK_ROUTE);
	if (r < 0) {
		nl_socket_free(s);
		return map_nl(r);
	}
	*ret = s;
	return 0;
}

/* Open a route socket inside the netns netns_fd: the socket keeps the namespace it was created
 * in, so switching this thread there and back is enough. */
static int nl_open_in(int netns_fd, struct nl_sock **ret)
{
	_cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	int r, r2;

	if (self < 0)
		return -errno;
	if (setns(netns_fd, CLONE_NEWNET) < 0)
		return -errno;
	r = nl_open(ret);
	r2 = setns(self, CLONE_NEWNET) < 0 ? -errno : 0;
	if (r2 < 0) {
		/* this thread is stuck in the task's netns: never return as if all was well */
		if (r == 0)
			nl_socket_free(*ret);
		return r2;
	}
	return r;
}

static int link_set_up(struct nl_sock *s, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL, *change = NULL;
	int r;

	r = map_nl(rtnl_link_get_kernel(s, 0, name, &link));
	if (r < 0)
		return r;
	change = rtnl_link_alloc();
	if (!change)
		return -ENOMEM;
	rtnl_link_set_flags(change, IFF_UP);
	return map_nl(rtnl_link_change(s, link, change, 0));
}

static int addr_add(struct nl_sock *s, int ifindex, struct in_addr a, uint8_t prefix)
{
	_cleanup_(rtnl_addr_putp) struct rtnl_addr *addr = rtnl_addr_alloc();
	_cleanup_(nl_addr_putp) struct nl_addr *local = NULL;
	int r;

	if (!addr)
		return -ENOMEM;
	local = nl_addr_build(AF_INET, &a, sizeof(a));
	if (!local)
		return -ENOMEM;
	nl_addr_set_prefixlen(local, prefix);
	rtnl_addr_set_ifindex(addr, ifindex);
	rtnl_addr_set_family(addr, AF_INET);
	r = map_nl(rtnl_addr_set_local(addr, local));
	if (r < 0)
		return r;
	rtnl_addr_set_prefixlen(addr, prefix);
	return map_nl(rtnl_addr_add(s, addr, 0));
}

static int route_add_default(struct nl_sock *s, int ifindex, struct in_addr gw)
{
	struct rtnl_route *route = rtnl_route_alloc();
	struct rtnl_nexthop *nh;
	_cleanup_(nl_addr_putp) struct nl_addr *dst = NULL, *gwa = NULL;
	int r;

	if (!route)
		return -ENOMEM;
	nh = rtnl_route_nh_alloc();
	dst = nl_addr_build(AF_INET, &(struct in_addr){ 0 }, 4);
	gwa = nl_addr_build(AF_INET, &gw, sizeof(gw));
	if (!nh || !dst || !gwa) {
		if (nh)
			rtnl_route_nh_free(nh);
		rtnl_route_put(route);
		return -ENOMEM;
	}
	nl_addr_set_prefixlen(dst, 0);
	rtnl_route_set_family(route, AF_INET);
	rtnl_route_set_dst(route, dst);
	rtnl_route_nh_set_ifindex(nh, ifindex);
	rtnl_route_nh_set_gateway(nh, gwa);
	rtnl_route_add_nexthop(route, nh); /* route owns nh now */
	r = map_nl(rtnl_route_add(s, route, NLM_F_CREATE));
	rtnl_route_put(route);
	return r;
}

/* Create the bridge with the gateway address when missing; a concurrent creator is fine. */
static int bridge_ensure(struct nl_sock *s, const char *name, struct in_addr gw, uint8_t prefix,
			 int *ret_ifindex, struct cd_error *err)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
	int r;

	r = map_nl(rtnl_link_get_kernel(s, 0, name, &link));
	if (r == -ENODEV) {
		r = map_nl(rtnl_link_bridge_add(s, name));
		if (r < 0 && r != -EEXIST)
			return cd_error_set(err, r, "cannot create bridge %s: %s", name,
					    strerror(-r));
		r = map_nl(rtnl_link_get_kernel(s, 0, name, &link));
	}
	if (r < 0)
		return cd_error_set(err, r, "cannot find bridge %s: %s", name, strerror(-r));
	if (!rtnl_link_is_bridge(link))
		return cd_error_set(err, -EEXIST, "%s exists and is not a bridge", name);
	*ret_ifindex = rtnl_link_get_ifindex(link);
	r = addr_add(s, *ret_ifindex, gw, prefix);
	if (r < 0 && r != -EEXIST)
		return cd_error_set(err, r, "cannot add the gateway address to %s: %s", name,
				    strerror(-r));
	r = link_set_up(s, name);
	if (r < 0)
		return cd_error_set(err, r, "cannot bring bridge %s up: %s", name, strerror(-r));
	return 0;
}

/* The network namespace this process runs in (its nsfs inode), 0 when unknown. Leases record
 * it: whether a lease's veth still exists can only be judged from the namespace holding it. */
static unsigned long long own_netns(void)
{
	struct stat st;

	return stat("/proc/self/ns/net", &st) == 0 ? (unsigned long long)st.st_ino : 0;
}

static int lease_acquire(const char *dir, struct in_addr net, uint8_t prefix, const char *ifname,
			 const char *task_id, struct in_addr *ret, struct cd_error *err)
{
	uint32_t base = ntohl(net.s_addr), size = UINT32_C(1) << (32 - prefix);
	_cleanup_close_ int dfd = -EBADF;
	int r;

	r = fs_mkdir_p(dir, 0700);
	if (r < 0)
		return cd_error_set(err, r, "cannot create lease dir %s: %s", dir, strerror(-r));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return cd_error_set(err, -errno, "cannot open lease dir %s: %m", dir);
	/* .0 network, .1 gateway, last broadcast */
	for (uint32_t i = 2; i < size - 1; i++) {
		struct in_addr a = { .s_addr = htonl(base + i) };
		char name[INET_ADDRSTRLEN], line[128];
		_cleanup_close_ int fd = -EBADF;

		inet_ntop(AF_INET, &a, name, sizeof(name));
		fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			if (errno == EEXIST)
				continue;
			return cd_error_set(err, -errno, "cannot create lease %s/%s: %m", dir,
					    name);
		}
		snprintf(line, sizeof(line), "%s %s %llu\n", ifname, task_id, own_netns());
		r = fs_write_all(fd, line, strlen(line));
		if (r < 0) {
			(void)unlinkat(dfd, name, 0);
			return cd_error_set(err, r, "cannot write lease %s/%s", dir, name);
		}
		*ret = a;
		return 0;
	}
	return cd_error_set(err, -ENOSPC, "subnet %s/%u is exhausted (leases in %s)",
			    inet_ntoa(net), prefix, dir);
}

static void lease_release(const char *dir, struct in_addr a)
{
	char path[512], name[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &a, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	(void)unlink(path);
}

static int link_delete(struct nl_sock *s, const char *name)
{
	_cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
	int r;

	r = map_nl(rtnl_link_get_kernel(s, 0, name, &link));
	if (r == -ENODEV)
		return 0;
	if (r < 0)
		return r;
	r = map_nl(rtnl_link_delete(s, link));
	return r == -ENODEV ? 0 : r;
}

/* Inside the task: lo up, eth0 address + up, default route. */
static int configure_inside(int netns_fd, const struct netns_lease *l, bool isolate,
			    struct cd_error *err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *eth = NULL;
	int r, ifindex;

	r = nl_open_in(netns_fd, &s);
	if (r < 0)
		return cd_error_set(err, r, "cannot open a netlink socket in the task netns: %s",
				    strerror(-r));
	r = link_set_up(s, "lo");
	if (r < 0)
		return cd_error_set(err, r, "cannot bring lo up: %s", strerror(-r));
	r = map_nl(rtnl_link_get_kernel(s, 0, "eth0", &eth));
	if (r < 0)
		return cd_error_set(err, r, "eth0 missing in the task netns: %s", strerror(-r));
	ifindex = rtnl_link_get_ifindex(eth);
	r = addr_add(s, ifindex, l->addr, l->prefix);
	if (r < 0)
		return cd_error_set(err, r, "cannot address eth0: %s", strerror(-r));
	r = link_set_up(s, "eth0");
	if (r < 0)
		return cd_error_set(err, r, "cannot bring eth0 up: %s", strerror(-r));
	if (isolate)
		return 0; /* only the subnet's on-link route that the address brought */
	r = route_add_default(s, ifindex, l->gateway);
	if (r < 0)
		return cd_error_set(err, r, "cannot add the default route: %s", strerror(-r));
	return 0;
}

int netns_setup_bridge(int netns_fd, pid_t pid, const char *task_id,
		       const struct netns_bridge_config *cfg, struct netns_lease *ret,
		       struct cd_error *err)
{
	static const struct netns_bridge_config defaults;
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	_cleanup_(rtnl_link_putp) struct rtnl_link *host = NULL;
	struct netns_lease l = { 0 };
	const char *bridge, *subnet, *dir;
	struct in_addr net;
	int r, br_index = 0;

	if (!cfg)
		cfg = &defaults;
	bridge = cfg->bridge ? cfg->bridge : NETNS_DEFAULT_BRIDGE;
	subnet = cfg->subnet ? cfg->subnet : NETNS_DEFAULT_SUBNET;
	dir = cfg->ipam_dir ? cfg->ipam_dir : NETNS_DEFAULT_IPAM_DIR;
	if (strlen(bridge) >= IFNAMSIZ || !*bridge || strchr(bridge, '/'))
		return cd_error_set(err, -EINVAL, "invalid bridge name \"%s\"", bridge);
	if (strlen(dir) >= sizeof(l.ipam_dir))
		return cd_error_set(err, -ENAMETOOLONG, "lease dir path too long");
	if (netns_parse_subnet(subnet, &net, &l.prefix) < 0)
		return cd_error_set(err, -EINVAL, "invalid subnet \"%s\" (want a.b.c.d/8..30)",
				    subnet);
	strcpy(l.bridge, bridge);
	strcpy(l.ipam_dir, dir);
	l.gateway.s_addr = htonl(ntohl(net.s_addr) + 1);
	netns_host_ifname(task_id, l.host_ifname);

	r = nl_open(&s);
	if (r < 0)
		return cd_error_set(err, r, "cannot open a netlink socket: %s", strerror(-r));
	r = map_nl(rtnl_link_get_kernel(s, 0, l.host_ifname, &host));
	if (r == 0)
		return cd_error_set(err, -EEXIST, "veth %s already exists (task id clash?)",
				    l.host_ifname);
	r = bridge_ensure(s, bridge, l.gateway, l.prefix, &br_index, err);
	if (r < 0)
		return r;
	r = lease_acquire(dir, net, l.prefix, l.host_ifname, task_id, &l.addr, err);
	if (r < 0)
		return r;
	r = map_nl(rtnl_link_veth_add(s, l.host_ifname, "eth0", pid));
	if (r < 0) {
		lease_release(dir, l.addr);
		return cd_error_set(err, r, "cannot create veth %s: %s", l.host_ifname,
				    strerror(-r));
	}
	r = map_nl(rtnl_link_get_kernel(s, 0, l.host_ifname, &host));
	if (r == 0)
		r = map_nl(rtnl_link_enslave_ifindex(s, br_index, rtnl_link_get_ifindex(host)));
	if (r == 0)
		r = link_set_up(s, l.host_ifname);
	if (r < 0)
		cd_error_set(err, r, "cannot attach %s to %s: %s", l.host_ifname, bridge,
			     strerror(-r));
	else
		r = configure_inside(netns_fd, &l, cfg->isolate, err);
	if (r < 0) {
		(void)link_delete(s, l.host_ifname);
		lease_release(dir, l.addr);
		return r;
	}
	*ret = l;
	return 0;
}

int netns_teardown(const struct netns_lease *lease, struct cd_error *err)
{
	_cleanup_(nl_socket_freep) struct nl_sock *s = NULL;
	int r;

	if (!lease->host_ifname[0])
		return 0;
	r = nl_open(&s);
	if (r < 0)
		return cd_error_set(err, r, "cannot open a netlink socket: %s", strerror(-r));
	r = link_delete(s, lease->host_ifname);
	if (r < 0)
		return cd_error_set(err, r, "cannot delete veth %s: %s", lease->host_ifname,
				    strerror(-r));
	if (lease->addr.s_addr)
		lease_release(lease->ipam_dir, lease->addr);
	return 0;
}

int netns_gc(const char *ipam_dir)
{
	unsigned long long mine = own_netns();
	DIR *d;
	int n = 0;

	if (!ipam_dir)
		ipam_dir = NETNS_DEFAULT_IPAM_DIR;
	d = opendir(ipam_dir);
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	for (struct dirent *de; (de = readdir(d));) {
		_cleanup_free_ char *s = NULL;
		char ifname[IFNAMSIZ] = "", task[128];
		unsigned long long ns = 0;
		struct in_addr a;

		if (inet_pton(AF_INET, de->d_name, &a) != 1)
			continue;
		if (fs_read_file_at(dirfd(d), de->d_name, 4096, &s, NULL) < 0)
			continue;
		/* "<veth> <task> <netns inode>"; older leases lack the namespace */
		if (sscanf(s, "%15s %127s %llu", ifname, task, &ns) < 1)
			ifname[0] = '\0';
		/* a lease taken in another network namespace: its veth is not visible from
		 * here, which says nothing about whether it is alive */
		if (ns && ns != mine)
			continue;
		if (ifname[0] && if_nametoindex(ifname) != 0)
			continue;
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			n++;
	}
	closedir(d);
	return n;
}
