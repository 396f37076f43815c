/*
 * The toolbox routes of sessions (daytona-api.md 7.3):
 *   POST   /process/session                          {sessionId}      201
 *   GET    /process/session                          [Session]
 *   GET    /process/session/{sid}                    Session
 *   DELETE /process/session/{sid}                                     204
 *   POST   /process/session/{sid}/exec               {command, runAsync|async, suppressInputEcho}
 *   GET    /process/session/{sid}/command/{cid}      {id, command, exitCode?}
 *   GET    /process/session/{sid}/command/{cid}/logs text, or JSON for SDK >= 0.167.0
 *   POST   /process/session/{sid}/command/{cid}/input {data}
 */
#define QUAVERD_RUNTIME_INTERNAL
#define QUAVERD_TOOLBOX_INTERNAL
#include "session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "runtime.h"
#include "session_internal.h"
#include "toolbox.h"
#include "util.h"

/* Session ids become path segments: printable, no '/', at most SESSION_ID_MAX bytes. */
static bool session_id_valid(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > SESSION_ID_MAX || !strcmp(id, ".") || !strcmp(id, ".."))
		return false;
	for (const unsigned char *p = (const unsigned char *)id; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '/' || *p == '\\')
			return false;
	return true;
}

static cJSON *body_object(struct tb_call *c)
{
	cJSON *o =
	    cJSON_ParseWithLength(c->req->body.data ? c->req->body.data : "", c->req->body.len);

	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		tb_error(c, 400, "INVALID_REQUEST_BODY", "the request body must be a JSON object");
		return NULL;
	}
	return o;
}

/* Whether the client's X-Daytona-SDK-Version is at least major.minor.patch. */
static bool sdk_at_least(const struct http_request *req, int major, int minor, int patch)
{
	const char *v = http_header(req, "x-daytona-sdk-version");
	int a = 0, b = 0, p = 0;

	if (!v)
		return false;
	if (*v == 'v')
		v++;
	if (sscanf(v, "%d.%d.%d", &a, &b, &p) < 1)
		return false;
	if (a != major)
		return a > major;
	if (b != minor)
		return b > minor;
	return p >= patch;
}

/* {id, command, exitCode?} */
static cJSON *command_json(struct session *s, const struct session_cmd *cmd)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "id", cmd->id);
	cJSON_AddStringToObject(o, "command", cmd->command);
	pthread_mutex_lock(&s->lock);
	if (session_cmd_done(cmd) && cmd->has_exit)
		cJSON_AddNumberToObject(o, "exitCode", cmd->exit_code);
	pthread_mutex_unlock(&s->lock);
	return o;
}

static cJSON *session_json(struct session *s)
{
	cJSON *o = cJSON_CreateObject(), *cmds;

	cJSON_AddStringToObject(o, "sessionId", s->id);
	cmds = cJSON_AddArrayToObject(o, "commands");
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->ncmds; i++) {
		const struct session_cmd *cmd = s->cmds[i];
		cJSON *e = cJSON_CreateObject();

		cJSON_AddStringToObject(e, "id", cmd->id);
		cJSON_AddStringToObject(e, "command", cmd->command);
		if (session_cmd_done(cmd) && cmd->has_exit)
			cJSON_AddNumberToObject(e, "exitCode", cmd->exit_code);
		cJSON_AddItemToArray(cmds, e);
	}
	pthread_mutex_unlock(&s->lock);
	return o;
}

static void create_session(struct tb_call *c, struct rt_instance *inst)
{
	cJSON *body = body_object(c);
	const cJSON *sid;
	struct session *s;
	char why[512];
	int rc;

	if (!body)
		return;
	sid = cJSON_GetObjectItemCaseSensitive(body, "sessionId");
	if (!cJSON_IsString(sid) || !session_id_valid(sid->valuestring)) {
		tb_error(c, 400, "BAD_REQUEST",
			 "sessionId is required: 1 to %d printable characters without '/'",
			 SESSION_ID_MAX);
		goto out;
	}
	s = session_table_find(inst->sessions, sid->valuestring);
	if (s) {
		session_put(s);
		tb_error(c, 409, "CONFLICT", "session %s already exists", sid->valuestring);
		goto out;
	}
	s = session_start(inst, inst->rt->pump, sid->valuestring, why, sizeof(why));
	if (!s) {
		tb_error(c, 500, NULL, "cannot start the session's shell: %s", why);
		goto out;
	}
	rc = session_table_add(inst->sessions, s);
	if (rc < 0) {
		session_end(s);
		if (rc == -EEXIST)
			tb_error(c, 409, "CONFLICT", "session %s already exists", s->id);
		else if (rc == -ENOSPC)
			tb_error(c, 400, "BAD_REQUEST", "too many sessions (at most %d)",
				 SESSION_MAX_PER_SANDBOX);
		else
			tb_error(c, 500, NULL, "out of memory");
	} else {
		tb_reply_empty(c, 201);
	}
	session_put(s);
out:
	cJSON_Delete(body);
}

static void list_sessions(struct tb_call *c, struct rt_instance *inst)
{
	struct session **items;
	size_t n = session_table_snapshot(inst->sessions, &items);
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; i < n; i++) {
		cJSON_AddItemToArray(arr, session_json(items[i]));
		session_put(items[i]);
	}
	free(items);
	tb_json(c, 200, arr);
}

static bool flag(const cJSON *body, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, name));
}

/* The sync answer: {cmdId, output, stdout, stderr, exitCode}, written as text. */
static void reply_exec(struct tb_call *c, struct session *s, struct session_cmd *cmd)
{
	struct buf out = BUF_INIT, err = BUF_INIT, all = BUF_INIT, *b = &c->resp->body;
	int code, rc;

	rc = session_cmd_read(cmd, &out, &err, &all);
	pthread_mutex_lock(&s->lock);
	code = cmd->has_exit ? cmd->exit_code : -1;
	pthread_mutex_unlock(&s->lock);
	buf_reset(b);
	rc = rc ? rc : buf_printf(b, "{\"cmdId\":\"%s\",\"output\":", cmd->id);
	rc = rc ? rc : tb_json_string(b, buf_str(&all), all.len);
	rc = rc ? rc : buf_append_str(b, ",\"stdout\":");
	rc = rc ? rc : tb_json_string(b, buf_str(&out), out.len);
	rc = rc ? rc : buf_append_str(b, ",\"stderr\":");
	rc = rc ? rc : tb_json_string(b, buf_str(&err), err.len);
	rc = rc ? rc : buf_printf(b, ",\"exitCode\":%d}", code);
	if (rc < 0) {
		tb_error(c, 500, NULL, "reading the command's output: %s", strerror(-rc));
	} else {
		c->resp->status = 200;
		copy_str(c->resp->content_type, sizeof(c->resp->content_type), "application/json");
	}
	buf_free(&out);
	buf_free(&err);
	buf_free(&all);
}

static void exec_command(struct tb_call *c, struct session *s)
{
	cJSON *body = body_object(c);
	const cJSON *command;
	struct session_cmd *cmd;
	bool async;
	int rc;

	if (!body)
		return;
	command = cJSON_GetObjectItemCaseSensitive(body, "command");
	if (!cJSON_IsString(command) ||
	    !command->valuestring[strspn(command->valuestring, " \t\r\n")]) {
		tb_error(c, 400, "BAD_REQUEST", "command is required");
		goto out;
	}
	/* suppressInputEcho is accepted: the session's shell echoes nothing. */
	async = flag(body, "runAsync") || flag(body, "async");
	cmd = session_submit(s, command->valuestring, async, &rc);
	if (!cmd) {
		if (rc == -EPIPE)
			tb_error(c, 410, "SESSION_ENDED", "session %s has ended", s->id);
		else if (rc == -ETIMEDOUT)
			tb_error(c, 409, "CONFLICT",
				 "session %s does not take commands: its shell is not reading",
				 s->id);
		else
			tb_error(c, 500, NULL, "cannot send the command: %s", strerror(-rc));
		goto out;
	}
	if (async) {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "cmdId", cmd->id);
		tb_json(c, 202, o);
	} else {
		session_wait_cmd(s, cmd);
		store_touch(c->store, c->view.sandbox_id); /* activity until its end */
		reply_exec(c, s, cmd);
	}
	session_unpin_cmd(s, cmd);
out:
	cJSON_Delete(body);
}

static void command_logs(struct tb_call *c, struct session *s, struct session_cmd *cmd)
{
	struct buf out = BUF_INIT, err = BUF_INIT, all = BUF_INIT, *b = &c->resp->body;
	bool json = sdk_at_least(c->req, 0, 167, 0);
	int rc;

	(void)s;
	/* follow=true is the websocket's business; over plain HTTP this is the snapshot. */
	rc = session_cmd_read(cmd, json ? &out : NULL, json ? &err : NULL, &all);
	buf_reset(b);
	if (rc == 0 && json) {
		rc = buf_append_str(b, "{\"output\":");
		rc = rc ? rc : tb_json_string(b, buf_str(&all), all.len);
		rc = rc ? rc : buf_append_str(b, ",\"stdout\":");
		rc = rc ? rc : tb_json_string(b, buf_str(&out), out.len);
		rc = rc ? rc : buf_append_str(b, ",\"stderr\":");
		rc = rc ? rc : tb_json_string(b, buf_str(&err), err.len);
		rc = rc ? rc : buf_append_str(b, "}");
	} else if (rc == 0) {
		rc = buf_append(b, buf_str(&all), all.len);
	}
	if (rc < 0) {
		tb_error(c, 500, NULL, "reading the command's logs: %s", strerror(-rc));
	} else {
		c->resp->status = 200;
		copy_str(c->resp->content_type, sizeof(c->resp->content_type),
			 json ? "application/json" : "text/plain; charset=utf-8");
	}
	buf_free(&out);
	buf_free(&err);
	buf_free(&all);
}

static void command_input(struct tb_call *c, struct session *s, struct session_cmd *cmd)
{
	cJSON *body = body_object(c);
	const cJSON *data;
	bool running, async;
	int rc;

	if (!body)
		return;
	data = cJSON_GetObjectItemCaseSensitive(body, "data");
	if (!cJSON_IsString(data)) {
		tb_error(c, 400, "BAD_REQUEST", "data must be a string");
		goto out;
	}
	pthread_mutex_lock(&s->lock);
	running = !session_cmd_done(cmd);
	async = cmd->async;
	pthread_mutex_unlock(&s->lock);
	if (!async) {
		tb_error(c, 400, "BAD_REQUEST", "command %s is not asynchronous: it reads no input",
			 cmd->id);
		goto out;
	}
	if (!running) {
		tb_error(c, 410, "COMMAND_ALREADY_COMPLETED", "command %s has already completed",
			 cmd->id);
		goto out;
	}
	rc = session_write_input(s, data->valuestring, strlen(data->valuestring));
	if (rc == -ETIMEDOUT)
		tb_error(c, 409, "CONFLICT", "command %s does not read its input", cmd->id);
	else if (rc < 0)
		tb_error(c, 410, "SESSION_ENDED", "session %s has ended", s->id);
	else
		tb_reply_empty(c, 200);
out:
	cJSON_Delete(body);
}

/* Splits "/a/b/c" into at most @max segments (in @scratch); returns how many, -1 if more. */
static int split(const char *route, char *scratch, size_t size, char **segs, int max)
{
	int n = 0;
	char *p;

	if (!copy_str(scratch, size, route))
		return -1;
	for (p = scratch; *p;) {
		while (*p == '/')
			*p++ = '\0';
		if (!*p)
			break;
		if (n == max)
			return -1;
		segs[n++] = p;
		p += strcspn(p, "/");
	}
	return n;
}

void tb_session(struct tb_call *c, struct rt_instance *inst, const char *route)
{
	const char *m = c->req->method;
	char scratch[1024], *segs[5];
	struct session *s = NULL;
	struct session_cmd *cmd = NULL;
	int n = split(route, scratch, sizeof(scratch), segs, 5);

	if (n == 0) {
		if (!strcmp(m, "POST"))
			create_session(c, inst);
		else if (!strcmp(m, "GET"))
			list_sessions(c, inst);
		else
			tb_error(c, 405, "METHOD_NOT_ALLOWED", "Cannot %s %s", m, c->req->path);
		return;
	}
	if (n < 0 || (n >= 2 && strcmp(segs[1], "exec") && strcmp(segs[1], "command")) ||
	    (n == 2 && strcmp(segs[1], "exec")) || (n == 3 && strcmp(segs[1], "command")) ||
	    (n == 4 && strcmp(segs[3], "logs") && strcmp(segs[3], "input")) || n > 4) {
		tb_error(c, 404, "NOT_FOUND", "Cannot %s %s", m, c->req->path);
		return;
	}
	if (n == 1 && !strcmp(m, "DELETE")) {
		s = session_table_remove(inst->sessions, segs[0]);
		if (!s) {
			tb_error(c, 404, "NOT_FOUND", "session %s not found", segs[0]);
			return;
		}
		session_end(s);
		session_put(s);
		tb_reply_empty(c, 204);
		return;
	}
	s = session_table_find(inst->sessions, segs[0]);
	if (!s) {
		tb_error(c, 404, "NOT_FOUND", "session %s not found", segs[0]);
		return;
	}
	if (n >= 3) {
		cmd = session_find_cmd(s, segs[2]);
		if (!cmd) {
			tb_error(c, 404, "NOT_FOUND", "command %s not found in session %s", segs[2],
				 s->id);
			goto out;
		}
	}
	if (n == 1 && !strcmp(m, "GET"))
		tb_json(c, 200, session_json(s));
	else if (n == 2 && !strcmp(m, "POST"))
		exec_command(c, s);
	else if (n == 3 && !strcmp(m, "GET"))
		tb_json(c, 200, command_json(s, cmd));
	else if (n == 4 && !strcmp(segs[3], "logs") && !strcmp(m, "GET"))
		command_logs(c, s, cmd);
	else if (n == 4 && !strcmp(segs[3], "input") && !strcmp(m, "POST"))
		command_input(c, s, cmd);
	else
		tb_error(c, 405, "METHOD_NOT_ALLOWED", "Cannot %s %s", m, c->req->path);
out:
	if (cmd)
		session_unpin_cmd(s, cmd);
	session_put(s);
}
