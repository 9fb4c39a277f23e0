/* SPDX-License-Identifier: MIT */
/*
 * /init of the test VMs (c-tests/vm/run.sh): a static program, the only
 * process the kernel starts. It mounts /proc, /sys, /dev and /tmp, runs
 * every line of /plan, and powers the machine off.
 *
 * A plan line is:  TIMEOUT LABEL [VAR=VALUE ...] PROGRAM [ARG ...]
 * (whitespace separated, no quoting). Each program runs with its output
 * in a file; when it ends (or is killed after TIMEOUT seconds) the file is
 * copied to the console between two marker lines:
 *
 *   @@@ begin LABEL
 *   ...the program's TAP...
 *   @@@ end LABEL status=N time=SECONDS
 *
 * N is the exit status, 128+signal for a signal, or "timeout". The last
 * line is "@@@ done RUNS". Copying after the fact keeps kernel messages
 * (hotplug, ...) out of the middle of a TAP line. The host side parses the
 * console file (c-tests/vm/summarise.sh).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ARGS 64

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
}

static void copy_out(const char *path)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return;
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		ssize_t off = 0;
		while (off < n) {
			ssize_t w = write(1, buf + off, n - off);
			if (w <= 0)
				break;
			off += w;
		}
	}
	/* A program whose last line has no newline still ends its block. */
	if (lseek(fd, -1, SEEK_END) >= 0 && read(fd, buf, 1) == 1 && buf[0] != '\n')
		write(1, "\n", 1);
	close(fd);
}

/* Runs one plan line. */
static void run_line(char *line, char **base_env, int nbase)
{
	char *tok[MAX_ARGS + 1], *env[MAX_ARGS + 16], *save = NULL;
	int ntok = 0, nenv = 0, i;
	char *t;

	for (t = strtok_r(line, " \t\n", &save); t && ntok < MAX_ARGS; t = strtok_r(NULL, " \t\n", &save))
		tok[ntok++] = t;
	if (ntok < 3 || tok[0][0] == '#')
		return;
	int limit = atoi(tok[0]);
	const char *label = tok[1];
	for (i = 0; i < nbase; i++)
		env[nenv++] = base_env[i];
	for (i = 2; i < ntok && strchr(tok[i], '=') && tok[i][0] != '/'; i++)
		env[nenv++] = tok[i];
	env[nenv] = NULL;
	char **argv = &tok[i];
	tok[ntok] = NULL;
	if (i >= ntok)
		return;

	say("@@@ begin %s\n", label);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open("/tmp/out", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setpgid(0, 0);
		execve(argv[0], argv, env);
		printf("Bail out! execve(%s): %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	char status[32] = "fork-failed";
	if (pid > 0) {
		struct timespec tick = { 0, 10 * 1000 * 1000 };
		long waited = 0;
		int st;
		for (;;) {
			pid_t r = waitpid(pid, &st, WNOHANG);
			if (r == pid) {
				if (WIFEXITED(st))
					snprintf(status, sizeof(status), "%d", WEXITSTATUS(st));
				else
					snprintf(status, sizeof(status), "%d", 128 + WTERMSIG(st));
				break;
			}
			if (r < 0 && errno != EINTR)
				break;
			if (waited++ >= (long)limit * 100) {
				kill(-pid, SIGKILL);
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
				snprintf(status, sizeof(status), "timeout");
				break;
			}
			nanosleep(&tick, NULL);
		}
	}
	/* Reap whatever the test left behind (orphans are ours as pid 1). */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	copy_out("/tmp/out");
	say("@@@ end %s status=%s time=%.1fs\n", label, status,
	    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
}

int main(void)
{
	static char line[4096];
	char *base_env[] = { "PATH=/bin", "HOME=/", "LD_LIBRARY_PATH=/lib", "RSEQ_TEST_IN_VM=1" };
	struct utsname u;
	int runs = 0;

	mkdir("/proc", 0755);
	mkdir("/sys", 0755);
	mkdir("/dev", 0755);
	mkdir("/tmp", 01777);
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mount("tmpfs", "/tmp", "tmpfs", 0, NULL);
	int con = open("/dev/console", O_RDWR);
	if (con >= 0) {
		dup2(con, 0);
		dup2(con, 1);
		dup2(con, 2);
		if (con > 2)
			close(con);
	}
	uname(&u);
	say("@@@ kernel %s %s, rseq feature size %lu, align %lu, %ld CPUs online of %ld\n", u.release, u.machine,
	    getauxval(27), getauxval(28), sysconf(_SC_NPROCESSORS_ONLN), sysconf(_SC_NPROCESSORS_CONF));

	FILE *plan = fopen("/plan", "r");
	if (!plan) {
		say("@@@ no /plan\n");
	} else {
		while (fgets(line, sizeof(line), plan)) {
			char copy[4096];
			memcpy(copy, line, sizeof(copy));
			char *p = copy;
			while (*p == ' ' || *p == '\t')
				p++;
			if (*p == '#' || *p == '\n' || *p == 0)
				continue;
			run_line(copy, base_env, (int)(sizeof(base_env) / sizeof(base_env[0])));
			runs++;
		}
		fclose(plan);
	}
	say("@@@ done %d\n", runs);
	sync();
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}
