/*
 * Processes inside a sandbox (process*.c): starting one in a running
 * instance's namespaces, and the toolbox routes of daytona-api.md 7.1, 7.2
 * and 7.6 (execute, code-run, env). Sessions (7.3) are in session.h.
 *
 * How a process starts: quaverd forks a relay; the relay (single-threaded)
 * keeps only the descriptors it needs, drops its supplementary groups and
 * joins every namespace of the sandbox's init with one setns(pidfd): user
 * (uid 1000 there), mount (which also sets its root), pid (for its
 * children), uts, ipc, network. It forks the process, a member of the
 * sandbox's pid namespace, which moves itself into the sandbox's cgroups
 * (the relay stays out: it is quaverd's helper), makes its own session and
 * process group, resets signals, sets no_new_privs, changes to its
 * directory and executes; exec drops every capability since uid 1000 is
 * not root there. The relay reports the process's pid and, later, its wait
 * status over a pipe, then exits. There is no cgroup namespace: a process
 * that reads /proc/self/cgroup sees quaverd-STATE-RUN/SANDBOX_ID.
 */
#ifndef QUAVERD_PROCESS_H
#define QUAVERD_PROCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct tb_call;

/* Toolbox routes: "process/..." (execute, code-run, session/...) and "env". */
void tb_process(struct tb_call *c);
void tb_env(struct tb_call *c);

/* Largest output kept of one execute, code-run or session command; the rest is dropped. */
#define PROCESS_OUTPUT_MAX (64ULL << 20)

#ifdef QUAVERD_RUNTIME_INTERNAL

struct rt_instance;

struct rt_spawn {
	const char *const *argv; /* argv[0]: the program's path inside the sandbox */
	char *const *envp;
	const char *cwd; /* inside the sandbox; NULL: RT_HOME */
	int stdin_fd;	 /* -1: /dev/null */
	int stdout_fd;	 /* -1: /dev/null */
	int stderr_fd;	 /* -1: /dev/null */
};

enum rt_stage {
	RT_STAGE_NONE,
	RT_STAGE_SETNS,
	RT_STAGE_FORK,
	RT_STAGE_CGROUP,
	RT_STAGE_CHDIR,
	RT_STAGE_EXEC
};

/* A process started by rt_spawn. */
struct rt_proc {
	pid_t pid;     /* as the host sees it; also its process group and session */
	pid_t relay;   /* quaverd's child reporting on it (reaped once it reports the exit) */
	int status_fd; /* the relay's reports, non-blocking; -1 once closed */
	bool exited;
	int wstatus;		  /* when exited */
	enum rt_stage fail_stage; /* it never ran: where it failed */
	int fail_errno;
	unsigned char rec[12]; /* a report being read */
	size_t rec_len;
};

/*
 * Starts a process in @inst. 0, or -errno with a sentence in @why (the
 * instance is not running, the namespaces are gone...). A process that
 * starts but cannot change to its directory or execute still succeeds
 * here: it exits 127 at once with fail_stage set.
 */
int rt_spawn(struct rt_instance *inst, const struct rt_spawn *req, struct rt_proc *p, char *why,
	     size_t why_size);
/*
 * Reads the relay's reports that arrived (never blocks). Returns true once
 * the exit is known. The process stays a zombie (its pid and group pinned,
 * so signalling the group stays safe) until status_fd is closed by
 * rt_proc_close_status or rt_proc_release: do it promptly after the exit,
 * since a sandbox's stop waits for every zombie of it to go. A caller with
 * status_fd in an epoll set removes it first.
 */
bool rt_proc_poll(struct rt_proc *p);
/* Closes status_fd (the relay then reaps the process) and reaps the relay. */
void rt_proc_close_status(struct rt_proc *p);
/* Blocks until the exit is known. */
void rt_proc_wait(struct rt_proc *p);
/* Sends @sig to the process's group (nothing once status_fd is closed). */
void rt_proc_signal_group(struct rt_proc *p, int sig);
/* Releases what is left (kills the group with SIGKILL first when it still runs, and waits). */
void rt_proc_release(struct rt_proc *p);
/* Exit code as a shell shows it: the status, 128+signal, -1 when it never ran. */
int rt_proc_exit_code(const struct rt_proc *p);
/* "chdir /x: No such file or directory" for a process that never ran. */
void rt_proc_failure(const struct rt_proc *p, const char *cwd, const char *program, char *out,
		     size_t size);

#endif /* QUAVERD_RUNTIME_INTERNAL */

#endif
