/* SPDX-License-Identifier: Apache-2.0 */
/*
 * sdnotify.h — the systemd readiness protocol (sd_notify(3)) without linking libsystemd:
 * one datagram to $NOTIFY_SOCKET. Owns nothing. Without NOTIFY_SOCKET (not under systemd with
 * Type=notify) every call is a no-op returning 0, so binaries call it unconditionally.
 */
#pragma once

/* Send state (e.g. "READY=1\nSTATUS=listening on 127.0.0.1:7411"). Returns 1 when sent, 0 when
 * there is no NOTIFY_SOCKET, -errno on failure. */
int sd_notify_send(const char *state);
