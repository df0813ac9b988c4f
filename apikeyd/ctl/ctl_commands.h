/* SPDX-License-Identifier: MIT */
/*
 * The commands of apikeyctl's command table: the key commands (ctl_keys.c)
 * and the daemon-wide ones (ctl_admin.c).  Each runs once the command line
 * is checked against the table and returns 0 or a negative errno (see
 * ctl_call.h).
 */
#pragma once

#include "ctl_call.h"

int cmd_create(struct ctl *c, struct args *a);
int cmd_list(struct ctl *c, struct args *a);
int cmd_show(struct ctl *c, struct args *a);
int cmd_update(struct ctl *c, struct args *a);
int cmd_rotate(struct ctl *c, struct args *a);
int cmd_disable(struct ctl *c, struct args *a);
int cmd_enable(struct ctl *c, struct args *a);
int cmd_revoke(struct ctl *c, struct args *a);
int cmd_delete(struct ctl *c, struct args *a);
int cmd_verify(struct ctl *c, struct args *a);
int cmd_sessions(struct ctl *c, struct args *a);
/* disable, enable, revoke, delete with --owner instead of a KEY (ctl_bulk.c). */
int cmd_bulk(struct ctl *c, struct args *a, const char *action);
/* create --from FILE: many keys in one transaction (ctl_bulk.c). */
int cmd_create_from(struct ctl *c, struct args *a);
int cmd_usage(struct ctl *c, struct args *a);

int cmd_shared_secret(struct ctl *c, struct args *a);
int cmd_audit(struct ctl *c, struct args *a);
int cmd_lockout(struct ctl *c, struct args *a);
int cmd_status(struct ctl *c, struct args *a);
int cmd_backup(struct ctl *c, struct args *a); /* ctl_backup.c */
int cmd_fleet(struct ctl *c, struct args *a);
