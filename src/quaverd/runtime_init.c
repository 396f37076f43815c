/*
 * quaverd-sandbox-init: pid 1 of a sandbox's pid namespace (runtime.c).
 *
 * bubblewrap executes it (--as-pid-1) through /proc/self/fd/N, so the
 * binary never appears in the sandbox's file tree. It reaps every process
 * reparented to it and otherwise does nothing until its lifeline, the read
 * end of a pipe whose only write end quaverd holds, reports end of file:
 * quaverd closed it or died. Then it exits, and the kernel kills every
 * process left in the namespace (whatever it forked, however it detached).
 * Being pid 1 of the namespace, it receives no signal from inside that it
 * does not handle, so a sandbox process cannot end its own sandbox.
 *
 * Usage (by runtime.c only): quaverd-sandbox-init LIFELINE_FD READY_FD
 * It writes one byte to READY_FD once it runs, then closes it.
 *
 * The same program is quaverd's cgroup janitor:
 *     quaverd-sandbox-init --janitor LIFELINE_FD DIR...
 * started once by each quaverd, in a session of its own. When its lifeline
 * closes (quaverd stopped or was killed), it waits for the processes of the
 * cgroups under each DIR to go (the sandboxes' inits exit on their own
 * lifelines), removes those cgroups and DIR, and exits: a killed quaverd
 * leaves no cgroup behind in the cgroups it was started in.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int parse_fd(const char *s)
{
	char *end;
	long v;

	if (!s)
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < 3 || v > 65535)
		return -1;
	return (int)v;
}

/* Shows "quaverd-init" in ps instead of "/proc/self/fd/N 3 4" (the args area is rewritten). */
static void rename_self(int argc, char **argv)
{
	static const char name[] = "quaverd-init";
	char *start = argv[0], *end = argv[argc - 1] + strlen(argv[argc - 1]);
	size_t room = (size_t)(end - start);

	if (room < sizeof(name) - 1)
		return;
	memset(start, 0, room);
	memcpy(start, name, sizeof(name) - 1);
	prctl(PR_SET_NAME, name, 0, 0, 0);
}

/* Closes every descriptor from 3 up but @a and @b. */
static void close_all_but(int a, int b)
{
	unsigned lo = (unsigned)(a < b ? a : b), hi = (unsigned)(a < b ? b : a);

	/* close_range(2) is what matters (glibc 2.34 wraps it; the syscall works everywhere). */
	if (lo > 3)
		syscall(SYS_close_range, 3U, lo - 1, 0U);
	if (hi > lo + 1)
		syscall(SYS_close_range, lo + 1, hi - 1, 0U);
	syscall(SYS_close_range, hi + 1, ~0U, 0U);
}

/* SIGKILLs what DIR/cgroup.procs lists (nothing, normally) and removes DIR; 0 once gone. */
static int remove_group(const char *dir)
{
	char path[4096], text[4096];
	ssize_t n;
	int fd;

	if (rmdir(dir) == 0 || errno == ENOENT)
		return 0;
	if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, text, sizeof(text) - 1);
		close(fd);
		text[n > 0 ? n : 0] = '\0';
		for (char *p = text, *end; *p; p = end) {
			long pid = strtol(p, &end, 10);

			if (end == p)
				break;
			if (pid > 1)
				kill((pid_t)pid, SIGKILL);
			while (*end == '\n')
				end++;
		}
	}
	return -1;
}

static int janitor(int argc, char **argv)
{
	int lifeline = parse_fd(argv[2]);
	char junk[64];

	if (lifeline < 0)
		return 2;
	/* Out of quaverd's process group: a signal to the group must not end the cleanup. */
	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	syscall(SYS_close_range, 0U, (unsigned)lifeline - 1, 0U);
	syscall(SYS_close_range, (unsigned)lifeline + 1, ~0U, 0U);
	for (;;) {
		ssize_t n = read(lifeline, junk, sizeof(junk));

		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	/* A few seconds at most: the sandboxes' inits see the same end of file. */
	for (int attempt = 0; attempt < 100; attempt++) {
		bool left = false;

		for (int i = 3; i < argc; i++) {
			DIR *d = opendir(argv[i]);
			struct dirent *de;

			if (!d)
				continue;
			while ((de = readdir(d))) {
				char sub[4096];

				if (de->d_type != DT_DIR || de->d_name[0] == '.')
					continue;
				if (snprintf(sub, sizeof(sub), "%s/%s", argv[i], de->d_name) <
					(int)sizeof(sub) &&
				    remove_group(sub) < 0)
					left = true;
			}
			closedir(d);
			if (rmdir(argv[i]) < 0 && errno != ENOENT)
				left = true;
		}
		if (!left)
			return 0;
		usleep(50 * 1000);
	}
	return 1;
}

int main(int argc, char **argv)
{
	int lifeline, ready, sfd, devnull;
	struct pollfd pfd[2];
	sigset_t all;

	if (argc >= 3 && !strcmp(argv[1], "--janitor"))
		return janitor(argc, argv);
	lifeline = argc == 3 ? parse_fd(argv[1]) : -1;
	ready = argc == 3 ? parse_fd(argv[2]) : -1;
	if (lifeline < 0 || ready < 0 || getpid() != 1)
		return 2;
	/* Nobody inside may ptrace it or open its /proc/1/fd (the lifeline). */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	rename_self(argc, argv);

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, NULL);
	sigemptyset(&all);
	sigaddset(&all, SIGCHLD);
	sfd = signalfd(-1, &all, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sfd < 0)
		return 3;

	if (write(ready, "R", 1) != 1)
		return 4;
	close(ready);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull >= 0) {
		dup2(devnull, 0);
		dup2(devnull, 1);
		dup2(devnull, 2);
		close(devnull);
	}
	/* Keep only the lifeline and the signalfd: nothing of quaverd lingers here. */
	close_all_but(lifeline, sfd);

	pfd[0] = (struct pollfd){.fd = lifeline, .events = POLLIN};
	pfd[1] = (struct pollfd){.fd = sfd, .events = POLLIN};
	for (;;) {
		struct signalfd_siginfo si;

		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 5;
		}
		if (pfd[1].revents & POLLIN) {
			while (read(sfd, &si, sizeof(si)) == sizeof(si))
				;
		}
		/* Reap everything: orphans land here, and nobody else waits for them. */
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR)) {
			char junk[64];
			ssize_t n = read(lifeline, junk, sizeof(junk));

			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
				return 0; /* quaverd is gone: the namespace goes with us */
		}
	}
}
