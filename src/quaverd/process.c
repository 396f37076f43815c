/*
 * The toolbox's process routes (daytona-api.md 7.1, 7.2, 7.6): execute,
 * code-run and env, and the dispatch of process/session/... to session_api.c.
 * Every route needs a running instance (runtime.c) of the started sandbox.
 */
#define QUAVERD_RUNTIME_INTERNAL
#define QUAVERD_TOOLBOX_INTERNAL
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "runtime.h"
#include "session.h"
#include "toolbox.h"
#include "util.h"

/* After the process exits, how long its output pipe may stay silent before we stop waiting. */
#define DRAIN_GRACE_MS 200

/*
 * TypeScript: Debian's node-typescript transpiles (syntax errors fail, type
 * errors do not: the semantics of `ts-node -T`, which Daytona runs), then
 * node runs the result as the CommonJS module ./main.ts of the working dir.
 * The program comes on stdin.
 */
static const char ts_runner[] =
    "const fs=require('fs'),path=require('path'),Module=require('module');"
    "let ts;try{ts=require('typescript')}catch(e){ts=require('/usr/share/nodejs/typescript')}"
    "const src=fs.readFileSync(0,'utf8');const file=path.join(process.cwd(),'main.ts');"
    "const r=ts.transpileModule(src,{fileName:file,reportDiagnostics:true,compilerOptions:{"
    "module:ts.ModuleKind.CommonJS,target:ts.ScriptTarget.ES2020,esModuleInterop:true}});"
    "const bad=(r.diagnostics||[]).filter(d=>d.category===ts.DiagnosticCategory.Error);"
    "if(bad.length){for(const d of bad){let at='';if(d.file&&d.start!==undefined){"
    "const "
    "p=d.file.getLineAndCharacterOfPosition(d.start);at=`main.ts(${p.line+1},${p.character+1}): `}"
    "process.stderr.write(at+'error TS'+d.code+': "
    "'+ts.flattenDiagnosticMessageText(d.messageText,'\\n')+'\\n')}"
    "process.exit(1)}"
    "process.argv.splice(1,0,file);"
    "const m=new Module(file,null);m.filename=file;m.paths=Module._nodeModulePaths(process.cwd());"
    "m._compile(r.outputText,file);";

/* ---- request bodies ------------------------------------------------------------- */

/* The JSON object body; replies 400 and returns NULL when it is not one. */
static cJSON *json_body(struct tb_call *c)
{
	const struct http_request *req = c->req;
	struct buf spooled = BUF_INIT;
	cJSON *o;

	if (req->body_file) {
		if (read_file(req->body_file, &spooled, 64 << 20) < 0) {
			tb_error(c, 400, "INVALID_REQUEST_BODY", "the request body cannot be read");
			return NULL;
		}
		o = cJSON_ParseWithLength(spooled.data ? spooled.data : "", spooled.len);
		buf_free(&spooled);
	} else {
		o = cJSON_ParseWithLength(req->body.data ? req->body.data : "", req->body.len);
	}
	if (!cJSON_IsObject(o)) {
		cJSON_Delete(o);
		tb_error(c, 400, "INVALID_REQUEST_BODY", "the request body must be a JSON object");
		return NULL;
	}
	return o;
}

/* An optional string field; false (after a 400) when present with another type or a NUL. */
static bool opt_string(struct tb_call *c, const cJSON *body, const char *name, const char **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);

	*out = NULL;
	if (!v || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsString(v)) {
		tb_error(c, 400, "INVALID_REQUEST_BODY", "%s must be a string", name);
		return false;
	}
	*out = v->valuestring;
	return true;
}

/* envs: an object of strings whose names can be variables. */
static bool opt_envs(struct tb_call *c, const cJSON *body, const char *name, const cJSON **out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name), *e;

	*out = NULL;
	if (!v || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsObject(v)) {
		tb_error(c, 400, "INVALID_REQUEST_BODY", "%s must be an object of strings", name);
		return false;
	}
	cJSON_ArrayForEach(e, v)
	{
		if (!rt_env_key_valid(e->string)) {
			tb_error(c, 400, "BAD_REQUEST", "invalid environment variable name \"%s\"",
				 e->string ? e->string : "");
			return false;
		}
		if (!cJSON_IsString(e)) {
			tb_error(c, 400, "INVALID_REQUEST_BODY", "%s.%s must be a string", name,
				 e->string);
			return false;
		}
	}
	*out = v;
	return true;
}

/* timeout: whole seconds >= 0 (0 or absent: none). */
static bool opt_timeout(struct tb_call *c, const cJSON *body, int64_t *ms)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "timeout");

	*ms = 0;
	if (!v || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 4294967295.0 ||
	    v->valuedouble != floor(v->valuedouble)) {
		tb_error(c, 400, "INVALID_REQUEST_BODY",
			 "timeout must be a whole number of seconds, 0 or more");
		return false;
	}
	*ms = (int64_t)v->valuedouble * 1000;
	return true;
}

/* ---- running a process to its end ------------------------------------------------ */

struct run_result {
	struct buf output; /* stdout and stderr as they came */
	uint64_t dropped;  /* bytes beyond PROCESS_OUTPUT_MAX */
	bool timed_out;
};

/*
 * Feeds @input to the process's stdin (then closes it), collects its
 * combined output until it exits and its pipe is quiet, and kills its group
 * when @timeout_ms passes.
 */
static void run_to_end(struct rt_proc *p, int in_fd, const char *input, size_t input_len,
		       int out_fd, int64_t timeout_ms, struct run_result *res)
{
	int64_t deadline = timeout_ms > 0 ? now_mono_ms() + timeout_ms : INT64_MAX;
	int64_t quiet_since = 0;
	size_t fed = 0;
	char chunk[65536];

	if (in_fd >= 0)
		fcntl(in_fd, F_SETFL, fcntl(in_fd, F_GETFL) | O_NONBLOCK);
	fcntl(out_fd, F_SETFL, fcntl(out_fd, F_GETFL) | O_NONBLOCK);
	for (;;) {
		struct pollfd pfd[3];
		int n = 0, wait_ms = -1, idx_out = -1, idx_in = -1;
		int64_t now = now_mono_ms();

		if (!p->exited && now >= deadline) {
			/* The whole group, as Daytona does; it exits, the pipes end. */
			rt_proc_signal_group(p, SIGKILL);
			res->timed_out = true;
			deadline = INT64_MAX;
		}
		if (p->exited && out_fd < 0)
			break;
		if (p->exited) {
			/* A background job may hold the pipe open: stop once it stays quiet. */
			if (!quiet_since)
				quiet_since = now;
			if (now - quiet_since >= DRAIN_GRACE_MS)
				break;
			wait_ms = (int)(DRAIN_GRACE_MS - (now - quiet_since));
		} else if (deadline != INT64_MAX) {
			wait_ms = (int)(deadline - now > 60000 ? 60000 : deadline - now);
		}
		if (out_fd >= 0) {
			idx_out = n;
			pfd[n++] = (struct pollfd){.fd = out_fd, .events = POLLIN};
		}
		if (in_fd >= 0) {
			idx_in = n;
			pfd[n++] = (struct pollfd){.fd = in_fd, .events = POLLOUT};
		}
		if (!p->exited)
			pfd[n++] = (struct pollfd){.fd = p->status_fd, .events = POLLIN};
		if (poll(pfd, (nfds_t)n, wait_ms) < 0 && errno != EINTR)
			break;
		if (idx_in >= 0 && pfd[idx_in].revents) {
			ssize_t w =
			    fed < input_len ? write(in_fd, input + fed, input_len - fed) : 0;

			if (w > 0)
				fed += (size_t)w;
			if (fed >= input_len || (w < 0 && errno != EAGAIN && errno != EINTR)) {
				close(in_fd);
				in_fd = -1;
			}
		}
		if (idx_out >= 0 && pfd[idx_out].revents) {
			ssize_t r = read(out_fd, chunk, sizeof(chunk));

			if (r > 0) {
				size_t keep = (size_t)r;

				quiet_since = 0;
				if (res->output.len + keep > PROCESS_OUTPUT_MAX)
					keep = res->output.len >= PROCESS_OUTPUT_MAX
						   ? 0
						   : (size_t)(PROCESS_OUTPUT_MAX - res->output.len);
				if (keep)
					buf_append(&res->output, chunk, keep);
				res->dropped += (size_t)r - keep;
			} else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
				close(out_fd);
				out_fd = -1;
			}
		}
		rt_proc_poll(p);
	}
	if (in_fd >= 0)
		close(in_fd);
	if (out_fd >= 0)
		close(out_fd);
}

/* {"exitCode": N, "result": "..."} written as text (results can be tens of megabytes). */
static void reply_result(struct tb_call *c, int exit_code, const struct buf *output,
			 uint64_t dropped, const char *extra_text)
{
	struct buf *b = &c->resp->body;
	char note[128] = "";
	int rc;

	if (dropped)
		snprintf(note, sizeof(note),
			 "\n[quaverd: output truncated: %llu bytes beyond %llu MiB dropped]\n",
			 (unsigned long long)dropped, PROCESS_OUTPUT_MAX >> 20);
	buf_reset(b);
	rc = buf_printf(b, "{\"exitCode\":%d,\"result\":", exit_code);
	if (rc == 0 && buf_reserve(b, output->len + strlen(note) + 64) < 0)
		rc = -ENOMEM;
	if (rc == 0) {
		/* One JSON string from the output, the note and any extra text. */
		struct buf all = BUF_INIT;

		if (output->len + strlen(note) + strlen(extra_text) == output->len) {
			rc = tb_json_string(b, output->data ? output->data : "", output->len);
		} else {
			rc = buf_append(&all, output->data ? output->data : "", output->len);
			rc = rc ? rc : buf_append_str(&all, extra_text);
			rc = rc ? rc : buf_append_str(&all, note);
			rc = rc ? rc : tb_json_string(b, all.data, all.len);
		}
		buf_free(&all);
	}
	if (rc == 0)
		rc = buf_append_str(b, "}");
	if (rc < 0) {
		tb_error(c, 500, NULL, "out of memory building the result");
		return;
	}
	c->resp->status = 200;
	copy_str(c->resp->content_type, sizeof(c->resp->content_type), "application/json");
}

/*
 * Runs argv in the sandbox with @input on stdin and replies as execute and
 * code-run do: 200 {exitCode, result}, 408 on timeout.
 */
static void run_and_reply(struct tb_call *c, struct rt_instance *inst, const char *const *argv,
			  const cJSON *envs, const char *cwd, const char *input, size_t input_len,
			  int64_t timeout_ms)
{
	struct run_result res = {.output = BUF_INIT};
	int out[2] = {-1, -1}, in[2] = {-1, -1};
	struct rt_spawn req = {0};
	struct rt_proc proc;
	char **envp = NULL, why[512];
	int rc;

	envp = rt_instance_environ(inst, envs);
	if (!envp || pipe2(out, O_CLOEXEC) < 0 || (input && pipe2(in, O_CLOEXEC) < 0)) {
		tb_error(c, 500, NULL, "cannot start the process: %s",
			 envp ? strerror(errno) : "out of memory");
		goto out;
	}
	req = (struct rt_spawn){.argv = argv,
				.envp = envp,
				.cwd = cwd,
				.stdin_fd = in[0],
				.stdout_fd = out[1],
				.stderr_fd = out[1]};
	rc = rt_spawn(inst, &req, &proc, why, sizeof(why));
	close(out[1]);
	out[1] = -1;
	if (in[0] >= 0)
		close(in[0]);
	in[0] = -1;
	if (rc < 0) {
		tb_error(c, rc == -ESRCH ? 409 : 500, NULL, "cannot start the process: %s", why);
		goto out;
	}
	run_to_end(&proc, in[1], input, input_len, out[0], timeout_ms, &res);
	in[1] = out[0] = -1; /* closed by run_to_end */
	rt_proc_wait(&proc);
	if (res.timed_out) {
		tb_error(c, 408, "PROCESS_EXECUTION_TIMEOUT", "command execution timeout");
	} else if (proc.fail_stage != RT_STAGE_NONE) {
		/* It never ran (no such directory or program): -1 and the reason, as Daytona. */
		rt_proc_failure(&proc, cwd ? cwd : RT_HOME, argv[0], why, sizeof(why));
		reply_result(c, -1, &res.output, res.dropped, why);
	} else {
		reply_result(c, rt_proc_exit_code(&proc), &res.output, res.dropped, "");
	}
	rt_proc_release(&proc);
	/* A long command is activity until its end, not only at its start (auto-stop). */
	store_touch(c->store, inst->id);
out:
	for (int i = 0; i < 2; i++) {
		if (out[i] >= 0)
			close(out[i]);
		if (in[i] >= 0)
			close(in[i]);
	}
	free(envp);
	buf_free(&res.output);
}

/* cwd "" means the default; anything else must be absolute or is taken from the home. */
static const char *effective_cwd(const char *cwd)
{
	return cwd && cwd[0] ? cwd : NULL;
}

static void route_execute(struct tb_call *c, struct rt_instance *inst)
{
	const char *command, *cwd;
	const cJSON *envs;
	int64_t timeout_ms;
	cJSON *body = json_body(c);
	const char *argv[4];

	if (!body)
		return;
	if (!opt_string(c, body, "command", &command) || !opt_string(c, body, "cwd", &cwd) ||
	    !opt_envs(c, body, "envs", &envs) || !opt_timeout(c, body, &timeout_ms))
		goto out;
	if (!command || !command[strspn(command, " \t\r\n")]) {
		tb_error(c, 400, "BAD_REQUEST", "command is required");
		goto out;
	}
	argv[0] = inst->rt->shell;
	argv[1] = "-c";
	argv[2] = command;
	argv[3] = NULL;
	run_and_reply(c, inst, argv, envs, effective_cwd(cwd), NULL, 0, timeout_ms);
out:
	cJSON_Delete(body);
}

/* The language from the body, else the sandbox's code-toolbox-language label, else python. */
static bool code_language(struct tb_call *c, const cJSON *body, struct rt_instance *inst, char *out,
			  size_t size)
{
	const char *lang;
	struct store_sandbox_info info;
	struct store_err serr;

	if (!opt_string(c, body, "language", &lang))
		return false;
	copy_str(out, size, "python");
	if (lang && lang[0]) {
		copy_str(out, size, lang);
	} else if (store_sandbox_get(c->store, inst->id, &info, &serr) == 0) {
		const cJSON *l =
		    cJSON_GetObjectItemCaseSensitive(info.labels, "code-toolbox-language");

		if (cJSON_IsString(l) && l->valuestring[0])
			copy_str(out, size, l->valuestring);
		store_sandbox_info_free(&info);
	}
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return true;
}

static void route_code_run(struct tb_call *c, struct rt_instance *inst)
{
	const char *code;
	const cJSON *envs, *args, *a;
	int64_t timeout_ms;
	cJSON *body = json_body(c);
	const char **argv = NULL;
	char lang[64];
	struct buf program = BUF_INIT;
	size_t n = 0, nargs = 0;

	if (!body)
		return;
	if (!opt_string(c, body, "code", &code) || !opt_envs(c, body, "envs", &envs) ||
	    !opt_timeout(c, body, &timeout_ms) || !code_language(c, body, inst, lang, sizeof(lang)))
		goto out;
	if (!code) {
		tb_error(c, 400, "BAD_REQUEST", "code is required");
		goto out;
	}
	args = cJSON_GetObjectItemCaseSensitive(body, "argv");
	if (args && !cJSON_IsNull(args)) {
		if (!cJSON_IsArray(args)) {
			tb_error(c, 400, "INVALID_REQUEST_BODY",
				 "argv must be an array of strings");
			goto out;
		}
		cJSON_ArrayForEach(a, args)
		{
			if (!cJSON_IsString(a)) {
				tb_error(c, 400, "INVALID_REQUEST_BODY",
					 "argv must be an array of strings");
				goto out;
			}
			nargs++;
		}
	}
	argv = calloc(nargs + 8, sizeof(*argv));
	if (!argv) {
		tb_error(c, 500, NULL, "out of memory");
		goto out;
	}
	/* /usr/bin/env finds the interpreter on the sandbox's PATH, as a shell would. */
	argv[n++] = "/usr/bin/env";
	if (!strcmp(lang, "python")) {
		argv[n++] = "python3";
		argv[n++] = "-u";
		argv[n++] = "-";
		buf_append_str(&program, code);
	} else if (!strcmp(lang, "javascript")) {
		argv[n++] = "node";
		argv[n++] = "-";
		/* As Daytona: process.argv without the "-", same line so line numbers hold. */
		buf_append_str(&program, "process.argv.splice(1,1);");
		buf_append_str(&program, code);
	} else if (!strcmp(lang, "typescript")) {
		argv[n++] = "node";
		argv[n++] = "-e";
		argv[n++] = ts_runner;
		buf_append_str(&program, code);
	} else {
		tb_error(c, 400, "BAD_REQUEST", "unsupported language: %s", lang);
		goto out;
	}
	cJSON_ArrayForEach(a, args) argv[n++] = a->valuestring;
	argv[n] = NULL;
	run_and_reply(c, inst, argv, envs, NULL, program.data ? program.data : "", program.len,
		      timeout_ms);
out:
	free(argv);
	buf_free(&program);
	cJSON_Delete(body);
}

void tb_env(struct tb_call *c)
{
	struct runtime *rt = runtime_of(c->store);
	struct rt_instance *inst = rt ? rt_instance_get(rt, c->view.sandbox_id) : NULL;
	const cJSON *set, *unset, *e;
	const char *prefix;
	cJSON *body = NULL;

	if (!inst) {
		tb_error(c, 409, "CONFLICT", "Sandbox %s has no running processes",
			 c->view.sandbox_id);
		return;
	}
	body = json_body(c);
	if (!body || !opt_envs(c, body, "set", &set) ||
	    !opt_string(c, body, "unsetValuePrefix", &prefix))
		goto out;
	unset = cJSON_GetObjectItemCaseSensitive(body, "unset");
	if (unset && !cJSON_IsNull(unset)) {
		if (!cJSON_IsArray(unset)) {
			tb_error(c, 400, "INVALID_REQUEST_BODY", "unset must be an array of names");
			goto out;
		}
		cJSON_ArrayForEach(e, unset)
		{
			if (!cJSON_IsString(e) || !rt_env_key_valid(e->valuestring)) {
				tb_error(c, 400, "BAD_REQUEST",
					 "unset must be an array of variable names");
				goto out;
			}
		}
	}
	if (rt_instance_update_env(inst, set, unset) < 0)
		tb_error(c, 409, "CONFLICT", "Sandbox %s has no running processes", inst->id);
	else
		tb_reply_empty(c, 204);
out:
	cJSON_Delete(body);
	rt_instance_put(inst);
}

void tb_process(struct tb_call *c)
{
	struct runtime *rt = runtime_of(c->store);
	const char *route = c->route + strlen("process");
	const char *method = c->req->method;
	struct rt_instance *inst;

	inst = rt ? rt_instance_get(rt, c->view.sandbox_id) : NULL;
	if (!inst) {
		tb_error(c, 409, "CONFLICT", "Sandbox %s has no running processes%s",
			 c->view.sandbox_id, rt ? "" : " (quaverd runs without its runtime)");
		return;
	}
	if (!strcmp(route, "/execute") && !strcmp(method, "POST"))
		route_execute(c, inst);
	else if (!strcmp(route, "/code-run") && !strcmp(method, "POST"))
		route_code_run(c, inst);
	else if (!strncmp(route, "/session", 8) && (route[8] == '\0' || route[8] == '/'))
		tb_session(c, inst, route + 8);
	else
		tb_error(c, 404, "NOT_FOUND", "Cannot %s %s", method, c->req->path);
	rt_instance_put(inst);
}
