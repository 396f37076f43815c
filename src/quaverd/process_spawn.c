/*
 * Starting a process inside a sandbox's namespaces (process.h explains the
 * steps). Between fork and exec only async-signal-safe calls are made:
 * everything (argv, envp, the plan) is prepared before the fork.
 */
#define QUAVERD_RUNTIME_INTERNAL
#include "process.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "runtime.h"
#include "util.h"

/* What the relay writes on the status pipe: fixed-size records, each written at once. */
enum { REC_PID = 1, REC_FAIL = 2, REC_EXIT = 3 };

struct rec {
	int32_t kind;
	int32_t value;
	int32_t err;
};

_Static_assert(sizeof(struct rec) == sizeof(((struct rt_proc *)0)->rec), "record size");

/* Everything the relay and the process need, prepared before the fork. */
struct spawn_plan {
	int pidfd;
	int lifeline;
	int ns_flags;
	const struct rt_cgroup *cg;
	int in, out, err, status;
	const char *const *argv;
	char *const *envp;
	const char *cwd;
	bool drop_groups;
};

/*
 * The descriptors of the relay and the process: 0-2 stdio, 3 the status
 * pipe, 4 the init's pidfd, 5 the read end of the init's lifeline, from 6
 * the sandbox's cgroup.procs files.
 */
#define STATUS_SLOT 3
#define PIDFD_SLOT 4
#define LIFELINE_SLOT 5
#define CGROUP_SLOT 6
#define MAX_SLOTS (CGROUP_SLOT + RT_NLIMITS + 1)

static void rec_write(int fd, int kind, int value, int err)
{
	struct rec r = {.kind = kind, .value = value, .err = err};

	while (write(fd, &r, sizeof(r)) < 0 && errno == EINTR)
		;
}

static _Noreturn void child_main(const struct spawn_plan *pl, int ncgroups)
{
	struct sigaction dfl;
	sigset_t none;

	/*
	 * Into the sandbox's cgroups; the relay, its parent, stays out of them
	 * (it is quaverd's helper). Allowed here as quaverd's uid outside.
	 */
	for (int i = 0; i < ncgroups; i++) {
		/* Never run outside the sandbox's limits. */
		if (write(CGROUP_SLOT + i, "0", 1) != 1) {
			rec_write(STATUS_SLOT, REC_FAIL, RT_STAGE_CGROUP, errno);
			_exit(127);
		}
	}
	close_range(PIDFD_SLOT, ~0U, 0);
	/* Its own session and process group: a timeout or a delete kills the group. */
	setsid();
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		sigaction(sig, &dfl, NULL); /* quaverd ignores SIGPIPE: the program must not */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	umask(022);
	if (chdir(pl->cwd) < 0) {
		rec_write(STATUS_SLOT, REC_FAIL, RT_STAGE_CHDIR, errno);
		_exit(127);
	}
	execve(pl->argv[0], (char *const *)pl->argv, pl->envp);
	rec_write(STATUS_SLOT, REC_FAIL, RT_STAGE_EXEC, errno);
	_exit(127);
}

/* Puts @src[i] on descriptor i (0..n-1), whatever numbers they have now. */
static int place_fds(const int *src, int n)
{
	int tmp[MAX_SLOTS];

	for (int i = 0; i < n; i++) {
		tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, MAX_SLOTS + 10);
		if (tmp[i] < 0)
			return -1;
	}
	for (int i = 0; i < n; i++)
		if (dup2(tmp[i], i) < 0)
			return -1;
	return 0;
}

static _Noreturn void relay_main(const struct spawn_plan *pl)
{
	int src[MAX_SLOTS] = {pl->in, pl->out, pl->err, pl->status, pl->pidfd, pl->lifeline};
	int nfds = CGROUP_SLOT, status = 0;
	pid_t pid;

	for (int i = 0; i <= RT_NLIMITS; i++)
		if (pl->cg->procs_fd[i] >= 0)
			src[nfds++] = pl->cg->procs_fd[i];
	if (place_fds(src, nfds) < 0) {
		rec_write(pl->status, REC_FAIL, RT_STAGE_SETNS, errno);
		_exit(126);
	}
	/* Nothing of quaverd (sockets, other sandboxes' lifelines) goes into the sandbox. */
	close_range((unsigned)nfds, ~0U, 0);
	/* The status pipe must not survive the program's exec (its EOF means "relay gone"). */
	fcntl(STATUS_SLOT, F_SETFD, FD_CLOEXEC);
	/* The raw call: glibc's wrapper would try to reach quaverd's other threads. */
	if (pl->drop_groups)
		syscall(SYS_setgroups, 0, NULL);
	/*
	 * Every namespace at once, the user namespace with the others: an
	 * unprivileged quaverd may join the pid namespace only so, and once in
	 * the sandbox's user namespace no other join would be allowed
	 * (bubblewrap nests it below the owner of the others). The pid
	 * namespace applies to the children: the fork below lands there.
	 */
	if (setns(PIDFD_SLOT, pl->ns_flags) < 0) {
		rec_write(STATUS_SLOT, REC_FAIL, RT_STAGE_SETNS, errno);
		_exit(126);
	}
	pid = fork();
	if (pid < 0) {
		rec_write(STATUS_SLOT, REC_FAIL, RT_STAGE_FORK, errno);
		_exit(126);
	}
	if (pid == 0)
		child_main(pl, nfds - CGROUP_SLOT);
	/* The relay must not hold the process's pipes open; it needs only the status pipe. */
	close(0);
	close(1);
	close(2);
	close(PIDFD_SLOT);
	close_range(CGROUP_SLOT, ~0U, 0);
	rec_write(STATUS_SLOT, REC_PID, pid, 0);
	/*
	 * Learn the exit without reaping: the zombie keeps its pid (and process
	 * group) from being reused until quaverd has read the report and closed
	 * its end, so quaverd never signals a stranger's group.
	 */
	for (;;) {
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) == 0) {
			status = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8
							  : si.si_status & 0x7f;
			break;
		}
		if (errno != EINTR) {
			status = 126 << 8;
			break;
		}
	}
	rec_write(STATUS_SLOT, REC_EXIT, status, 0);
	/*
	 * Until quaverd closes its end (a pipe's write end then reports POLLERR),
	 * or the sandbox stops: its lifeline closes first, and the namespace
	 * cannot end while a zombie of it waits for its parent.
	 */
	for (;;) {
		struct pollfd pfd[2] = {{.fd = STATUS_SLOT, .events = 0},
					{.fd = LIFELINE_SLOT, .events = POLLIN}};

		if (poll(pfd, 2, -1) > 0 &&
		    ((pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) || pfd[1].revents))
			break;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* Handles one report; true for the exit. */
static bool take_record(struct rt_proc *p, const struct rec *r)
{
	switch (r->kind) {
	case REC_PID:
		p->pid = r->value;
		return false;
	case REC_FAIL:
		if (p->fail_stage == RT_STAGE_NONE) {
			p->fail_stage = (enum rt_stage)r->value;
			p->fail_errno = r->err;
		}
		return false;
	case REC_EXIT:
		p->wstatus = r->value;
		return true;
	default:
		return false;
	}
}

/* Reaps the relay: it exits once the status descriptor is closed. */
static void reap_relay(struct rt_proc *p)
{
	if (p->relay > 0) {
		while (waitpid(p->relay, NULL, 0) < 0 && errno == EINTR)
			;
		p->relay = 0;
	}
}

bool rt_proc_poll(struct rt_proc *p)
{
	if (p->exited)
		return true;
	while (p->status_fd >= 0 && !p->exited) {
		ssize_t n = read(p->status_fd, p->rec + p->rec_len, sizeof(p->rec) - p->rec_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return false;
		if (n <= 0) {
			/* The relay died without reporting (killed): nothing more will come. */
			if (p->wstatus == 0 && p->fail_stage == RT_STAGE_NONE)
				p->wstatus = SIGKILL; /* as "killed" */
			p->exited = true;
			return true;
		}
		p->rec_len += (size_t)n;
		if (p->rec_len == sizeof(p->rec)) {
			struct rec r;

			memcpy(&r, p->rec, sizeof(r));
			p->rec_len = 0;
			if (take_record(p, &r)) {
				p->exited = true;
				return true;
			}
		}
	}
	return p->exited;
}

void rt_proc_wait(struct rt_proc *p)
{
	while (!rt_proc_poll(p) && p->status_fd >= 0) {
		struct pollfd pfd = {.fd = p->status_fd, .events = POLLIN};

		poll(&pfd, 1, -1);
	}
}

void rt_proc_signal_group(struct rt_proc *p, int sig)
{
	/*
	 * Until the status descriptor is closed the process is not reaped (the
	 * relay waits for that), so its pid still names its group: safe even
	 * after the exit, when jobs it left in the group still run.
	 */
	if (p->status_fd >= 0 && p->pid > 0)
		kill(-p->pid, sig);
}

void rt_proc_close_status(struct rt_proc *p)
{
	if (p->status_fd >= 0) {
		close(p->status_fd);
		p->status_fd = -1;
	}
	reap_relay(p);
}

void rt_proc_release(struct rt_proc *p)
{
	if (!p->exited && p->pid > 0) {
		rt_proc_signal_group(p, SIGKILL);
		rt_proc_wait(p);
	}
	rt_proc_close_status(p);
}

int rt_proc_exit_code(const struct rt_proc *p)
{
	if (p->fail_stage != RT_STAGE_NONE)
		return -1;
	if (WIFEXITED(p->wstatus))
		return WEXITSTATUS(p->wstatus);
	if (WIFSIGNALED(p->wstatus))
		return 128 + WTERMSIG(p->wstatus);
	return -1;
}

void rt_proc_failure(const struct rt_proc *p, const char *cwd, const char *program, char *out,
		     size_t size)
{
	const char *why = strerror(p->fail_errno);

	switch (p->fail_stage) {
	case RT_STAGE_CHDIR:
		snprintf(out, size, "chdir %s: %s", cwd, why);
		break;
	case RT_STAGE_EXEC:
		snprintf(out, size, "exec %s: %s", program, why);
		break;
	case RT_STAGE_SETNS:
		snprintf(out, size, "entering the sandbox: %s", why);
		break;
	case RT_STAGE_FORK:
		snprintf(out, size, "fork: %s", why);
		break;
	case RT_STAGE_CGROUP:
		snprintf(out, size, "joining the sandbox's cgroups: %s", why);
		break;
	default:
		out[0] = '\0';
		break;
	}
}

int rt_spawn(struct rt_instance *inst, const struct rt_spawn *req, struct rt_proc *p, char *why,
	     size_t why_size)
{
	struct spawn_plan plan = {0};
	int pipefd[2] = {-1, -1}, devnull = -1, rc = 0;
	pid_t relay;

	memset(p, 0, sizeof(*p));
	p->status_fd = -1;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = -errno;
		snprintf(why, why_size, "pipe: %s", strerror(errno));
		return rc;
	}
	if (req->stdin_fd < 0 || req->stdout_fd < 0 || req->stderr_fd < 0) {
		devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
		if (devnull < 0) {
			rc = -errno;
			snprintf(why, why_size, "/dev/null: %s", strerror(errno));
			goto out;
		}
	}
	plan.in = req->stdin_fd >= 0 ? req->stdin_fd : devnull;
	plan.out = req->stdout_fd >= 0 ? req->stdout_fd : devnull;
	plan.err = req->stderr_fd >= 0 ? req->stderr_fd : devnull;
	plan.status = pipefd[1];
	plan.argv = req->argv;
	plan.envp = req->envp;
	plan.cwd = req->cwd ? req->cwd : RT_HOME;
	plan.drop_groups = geteuid() == 0;

	pthread_mutex_lock(&inst->lock);
	if (!inst->running) {
		pthread_mutex_unlock(&inst->lock);
		rc = -ESRCH;
		snprintf(why, why_size, "the sandbox's processes are stopped");
		goto out;
	}
	plan.pidfd = inst->init_pidfd;
	plan.lifeline = inst->lifeline_rd;
	plan.ns_flags = inst->ns_flags;
	plan.cg = &inst->cg;
	relay = fork();
	if (relay == 0)
		relay_main(&plan);
	pthread_mutex_unlock(&inst->lock);
	if (relay < 0) {
		rc = -errno;
		snprintf(why, why_size, "fork: %s", strerror(errno));
		goto out;
	}
	close(pipefd[1]);
	pipefd[1] = -1;
	p->relay = relay;
	p->status_fd = pipefd[0];
	pipefd[0] = -1;

	/* Blocking until the pid is known (or the relay failed): it comes at once. */
	while (p->pid == 0 && !p->exited) {
		struct rec r;
		ssize_t n = read(p->status_fd, p->rec + p->rec_len, sizeof(p->rec) - p->rec_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			p->exited = true;
			break;
		}
		p->rec_len += (size_t)n;
		if (p->rec_len < sizeof(p->rec))
			continue;
		memcpy(&r, p->rec, sizeof(r));
		p->rec_len = 0;
		if (take_record(p, &r))
			p->exited = true;
		else if (r.kind == REC_FAIL &&
			 (r.value == RT_STAGE_SETNS || r.value == RT_STAGE_FORK))
			p->exited = true; /* the relay itself failed: no process */
	}
	if (p->pid == 0) {
		rc = p->fail_stage == RT_STAGE_SETNS ? -ESRCH : -EIO;
		if (p->fail_stage != RT_STAGE_NONE)
			rt_proc_failure(p, plan.cwd, req->argv[0], why, why_size);
		else
			snprintf(why, why_size, "the process did not start");
		rt_proc_release(p);
		goto out;
	}
	fcntl(p->status_fd, F_SETFL, fcntl(p->status_fd, F_GETFL) | O_NONBLOCK);
out:
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	if (devnull >= 0)
		close(devnull);
	return rc;
}
