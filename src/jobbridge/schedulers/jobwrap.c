/* jobwrap: jobbridge's native job wrapper, the twin of jobwrap.py.
 *
 * Usage: jobwrap SPEC
 *
 * A batch script runs it on a job's private spec ("spec 2", written by
 * jobwrap.encode_spec): it starts the job's argv byte-exact with its env,
 * folder and files, writes a start record as soon as it runs and a raw exit
 * record (wait status, rusage, the signals the batch system sent) just before
 * it ends the way the job ended. The engine turns the raw record into the exit
 * info (exits.py holds the one wording). docs/job-wrapper.md is the contract; in short:
 *
 *   main: spec -> handlers -> start record -> start (fork, exec) -> wait4
 *         -> exit record -> end like the job.
 *
 * Why C: it runs before every element of a 10,000-job array on the compute
 * nodes' cores; the Python wrapper adds ~20 ms to a `true` job, this one ~2 ms
 * (its own exec and the job's fork; bench/wrapper_start.py). So: libc only, no
 * locale, no stdio on the normal path, the spec read with one open/fstat/read
 * and parsed in place (every string is a pointer into it).
 *
 * Where docs/job-wrapper.md leaves room, this file decides (jobwrap.py may follow):
 *  - fds 0-2 are made open (step 3) first thing, before the spec is read: then
 *    neither the spec, a record nor our own message can land on them, and what
 *    the job sees is the same.
 *  - A spec that cannot be read at all: `jobwrap: PATH: <strerror>`, exit 2,
 *    like a bad one. An empty start_file means "no start record".
 *  - Beyond the grammar, a spec is bad when kill_warning is not a signal number,
 *    an env entry has no '=' (or an empty key), or bytes follow the last field.
 *  - The wrapper unblocks the caught signals for itself (a batch system may
 *    start it with some blocked; it must still hear them to forward them), and
 *    sets SIGCHLD to its default action (ignored, the job would be reaped
 *    unseen); the job inherits that default.
 *  - fork or pipe failing counts as a start failure of "program" with that
 *    errno (the Python wrapper would die with a traceback and no record).
 *  - The start record cannot be written: `jobwrap: PATH: <strerror>`, exit 2,
 *    and the job does not run (the engine would never see it). The exit record
 *    cannot be written: the same message, then the wrapper still ends like the
 *    job (the batch system's account is then the only one, and a true one).
 *  - The job counts as started (2.1: signals forwarded to its group) from the
 *    fork, not from the error pipe's EOF: a job may run, and show it, before
 *    the wrapper hears of it. A warning that could not reach the job's group
 *    (before the fork, or before the child's setsid) is the one that 2.5 meets
 *    with a SIGKILL at once; the child dies of any other signal forwarded
 *    before its exec (default actions by then), and its record says so.
 *  - "wall" counts from just before the fork ("started" is taken after the
 *    start, as docs/job-wrapper.md says): a job quicker than the parent's wake-up would
 *    otherwise show more cpu than wall time.
 *  - Ending by a core-dumping signal: the wrapper sets its own core limit to 0
 *    first, so that only the job's core file (if any) is left, not ours.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* exits.KILL_GRACE_SECONDS: from the warning signal to SIGKILL of the job's group. */
#define KILL_GRACE_MS 2000
/* Mode of the records and of the job's new output files (exits.OUTPUT_MODE). */
#define PRIVATE_MODE 0600
#define OUTPUT_FLAGS (O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC)
#define MAGIC "jobbridge-spec 2"
/* The job's exit code when it could not start, as a shell says it. */
#define EXIT_NOT_STARTED 127
/* A bad spec or usage. */
#define EXIT_USAGE 2

extern char **environ;

#if defined(__GNUC__) || defined(__clang__)
#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define NORETURN
#define PRINTF_LIKE(f, a)
#endif

/* ---------------------------------------------------------------- the spec */

enum kill_reach { REACH_PROCESS_GROUP, REACH_SESSION, REACH_SCRIPT };

struct spec {
    const char *exit_file, *start_file;
    enum kill_reach reaches;
    int kill_warning;                     /* 0: none */
    int cpus;
    const char *stdin_path, *stdout_file, *stderr_file; /* "" for /dev/null */
    int join_stderrout;
    const char *working_directory;        /* "" to stay */
    int argc;
    char **argv;                          /* argc items, then NULL */
    int envc;
    char **env;                           /* envc "KEY=VALUE" items */
};

/* Parsing state: the spec's bytes and the next field. */
struct cursor {
    const char *path;
    char *at, *end;
};

static void die(const char *path, const char *fmt, ...)
    NORETURN PRINTF_LIKE(2, 3);

/* `jobwrap: PATH: MESSAGE` on stderr, exit 2. */
static void die(const char *path, const char *fmt, ...)
{
    char message[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    dprintf(STDERR_FILENO, "jobwrap: %s: %s\n", path, message);
    exit(EXIT_USAGE);
}

/* The next NUL-terminated field, named `what` in the error of a spec that ends before it. */
static char *field(struct cursor *c, const char *what)
{
    char *start = c->at;
    char *nul = memchr(start, '\0', (size_t)(c->end - start));
    if (nul == NULL)
        die(c->path, "bad spec (truncated at %s)", what);
    c->at = nul + 1;
    return start;
}

/* A decimal in [low, high], nothing else (no sign, no spaces); -1 if not. */
static long decimal(const char *text, long low, long high)
{
    long value = 0;
    if (*text == '\0')
        return -1;
    for (; *text; text++) {
        if (*text < '0' || *text > '9' || value > (high - (*text - '0')) / 10)
            return -1;
        value = value * 10 + (*text - '0');
    }
    return value < low ? -1 : value;
}

static long count_field(struct cursor *c, const char *what, long low)
{
    /* each counted item takes a byte at least: a count past the bytes left is a lie,
     * and bounding it here bounds the arrays allocated from it */
    long left = (long)(c->end - c->at);
    long value = decimal(field(c, what), low, left < INT_MAX ? left : INT_MAX);
    if (value < 0)
        die(c->path, "bad spec (%s)", what);
    return value;
}

/* Read and parse the spec at `path` (exits 2 saying why when it is not one). */
static void read_spec(const char *path, struct spec *spec)
{
    struct stat info;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &info) < 0)
        die(path, "%s", strerror(errno));
    /* a file: its size, read at once; a pipe (DRMAA's bulk jobs give the spec as
     * stdin, /dev/stdin): whatever comes until its end */
    size_t room = S_ISREG(info.st_mode) ? (size_t)info.st_size : 4096, size = 0;
    char *data = malloc(room + 1);
    for (;;) {
        if (data == NULL)
            die(path, "%s", strerror(errno));
        ssize_t n = read(fd, data + size, room + 1 - size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die(path, "%s", strerror(errno));
        if (n == 0)
            break;
        size += (size_t)n;
        if (size > room) { /* more than it said: grow */
            room = room ? room * 2 : 4096;
            data = realloc(data, room + 1);
        }
    }
    close(fd);
    if (size == 0)
        die(path, "bad spec (empty)");

    struct cursor c = {path, data, data + size};
    if (strcmp(field(&c, "magic"), MAGIC) != 0)
        die(path, "bad spec (not \"" MAGIC "\")");
    spec->exit_file = field(&c, "exit_file");
    if (*spec->exit_file == '\0')
        die(path, "bad spec (exit_file)");
    spec->start_file = field(&c, "start_file");
    const char *reaches = field(&c, "kill_reaches");
    if (strcmp(reaches, "process_group") == 0)
        spec->reaches = REACH_PROCESS_GROUP;
    else if (strcmp(reaches, "session") == 0)
        spec->reaches = REACH_SESSION;
    else if (strcmp(reaches, "script") == 0)
        spec->reaches = REACH_SCRIPT;
    else
        die(path, "bad spec (kill_reaches)");
    const char *warning = field(&c, "kill_warning");
    spec->kill_warning = *warning ? (int)decimal(warning, 1, NSIG - 1) : 0;
    if (spec->kill_warning < 0)
        die(path, "bad spec (kill_warning)");
    spec->cpus = (int)decimal(field(&c, "cpus"), 1, INT_MAX);
    if (spec->cpus < 0)
        die(path, "bad spec (cpus)");
    spec->stdin_path = field(&c, "stdin");
    spec->stdout_file = field(&c, "stdout_file");
    spec->stderr_file = field(&c, "stderr_file");
    const char *join = field(&c, "join_stderrout");
    if (*join && strcmp(join, "1") != 0)
        die(path, "bad spec (join_stderrout)");
    spec->join_stderrout = *join != '\0';
    spec->working_directory = field(&c, "working_directory");

    spec->argc = (int)count_field(&c, "argc", 1);
    spec->argv = malloc(((size_t)spec->argc + 1) * sizeof *spec->argv);
    if (spec->argv == NULL)
        die(path, "%s", strerror(errno));
    for (int i = 0; i < spec->argc; i++)
        spec->argv[i] = field(&c, "argv");
    spec->argv[spec->argc] = NULL;

    spec->envc = (int)count_field(&c, "envc", 0);
    spec->env = spec->envc ? malloc((size_t)spec->envc * sizeof *spec->env) : NULL;
    if (spec->envc && spec->env == NULL)
        die(path, "%s", strerror(errno));
    for (int i = 0; i < spec->envc; i++) {
        spec->env[i] = field(&c, "env");
        char *equals = strchr(spec->env[i], '=');
        if (equals == NULL || equals == spec->env[i])
            die(path, "bad spec (env entry without KEY=)");
    }
    if (c.at != c.end)
        die(path, "bad spec (bytes after the last field)");
}

/* ------------------------------------------------------- signal handling */

/* The signals a batch system sends to end, warn or signal a job
 * (jobwrap.CAUGHT_SIGNALS): the wrapper outlives them to write its record. */
static const int caught_signals[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGCONT, SIGXCPU};
#define N_CAUGHT (int)(sizeof caught_signals / sizeof *caught_signals)

/* Written by the handlers only (which never interrupt each other: each blocks
 * the others), read by main: an item is stored before the count that shows it. */
static volatile sig_atomic_t received[N_CAUGHT];
static volatile sig_atomic_t n_received;
/* The job's pid (and group, in script mode) from the fork on; 0 before. */
static volatile sig_atomic_t job_pid;
/* The warning came while the job's group could not be signalled (before the
 * fork, or before the child's setsid): the job never heard it. */
static volatile sig_atomic_t warning_missed;
/* Set before the handlers are installed, constant after. */
static int forward_signals;
static int warning_signal;

static int was_received(int sig)
{
    for (int i = 0; i < n_received; i++)
        if (received[i] == sig)
            return 1;
    return 0;
}

/* Async-signal-safe: notes the signal; in script mode, passes it to the job's
 * group, and the warning arms the SIGKILL that follows it (the batch system's
 * SIGKILL will reach the wrapper alone). */
static void on_caught(int sig)
{
    int saved_errno = errno;
    if (sig != SIGCONT && !was_received(sig) && n_received < N_CAUGHT) {
        received[n_received] = sig;
        n_received = n_received + 1;
    }
    if (forward_signals) {
        if (job_pid > 0 && killpg(job_pid, sig) == 0) {
            if (sig == warning_signal) {
                struct itimerval grace = {{0, 0},
                                          {KILL_GRACE_MS / 1000, KILL_GRACE_MS % 1000 * 1000}};
                setitimer(ITIMER_REAL, &grace, NULL);
            }
        } else if (sig == warning_signal) {
            warning_missed = 1;
        }
    }
    errno = saved_errno;
}

static void on_grace_over(int sig)
{
    (void)sig;
    if (job_pid > 0)
        killpg(job_pid, SIGKILL);
}

/* The caught signals, and SIGALRM (the grace timer). */
static void handled_set(sigset_t *set)
{
    sigemptyset(set);
    for (int i = 0; i < N_CAUGHT; i++)
        sigaddset(set, caught_signals[i]);
    sigaddset(set, SIGALRM);
}

static void install_handlers(const struct spec *spec)
{
    struct sigaction action;
    memset(&action, 0, sizeof action);
    handled_set(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    forward_signals = spec->reaches == REACH_SCRIPT;
    warning_signal = spec->kill_warning;
    action.sa_handler = on_caught;
    for (int i = 0; i < N_CAUGHT; i++)
        sigaction(caught_signals[i], &action, NULL);
    if (forward_signals) {
        action.sa_handler = on_grace_over;
        sigaction(SIGALRM, &action, NULL);
    }
    sigprocmask(SIG_UNBLOCK, &action.sa_mask, NULL);
    /* an ignored SIGCHLD (inherited from whoever started us) would reap the job
     * for us, and wait4 would find no child */
    signal(SIGCHLD, SIG_DFL);
}

/* --------------------------------------------------------------- records */

static double now(clockid_t clock)
{
    struct timespec t;
    clock_gettime(clock, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int write_all(int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Write `text` to `path` atomically (PATH.tmpPID, then rename) and privately: a
 * reader never sees half a record, a watcher sees one rename. 0, or -1 having said why. */
static int write_record(const char *path, const char *text)
{
    size_t size = strlen(path) + 32;
    char *tmp = malloc(size);
    int fd = -1, closed, error;
    if (tmp == NULL)
        goto failed;
    snprintf(tmp, size, "%s.tmp%ld", path, (long)getpid());
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, PRIVATE_MODE);
    if (fd < 0)
        goto failed;
    if (fchmod(fd, PRIVATE_MODE) < 0 || write_all(fd, text, strlen(text)) < 0)
        goto failed;
    closed = close(fd);
    fd = -1;
    if ((closed < 0 && errno != EINTR) || rename(tmp, path) < 0)
        goto failed;
    free(tmp);
    return 0;
failed:
    error = errno;
    if (fd >= 0)
        close(fd);
    if (tmp != NULL)
        unlink(tmp); /* ours: the name has our pid */
    dprintf(STDERR_FILENO, "jobwrap: %s: %s\n", path, strerror(error));
    free(tmp);
    return -1;
}

/* `text` as a JSON string into `out` (6 bytes per input byte + 3 at most):
 * bytes outside printable ASCII as \u00XX, so the record is ASCII like Python's. */
static char *json_string(char *out, const char *text)
{
    *out++ = '"';
    for (const unsigned char *s = (const unsigned char *)text; *s; s++) {
        if (*s == '"' || *s == '\\') {
            *out++ = '\\';
            *out++ = (char)*s;
        } else if (*s < 0x20 || *s >= 0x7f) {
            out += sprintf(out, "\\u%04x", *s);
        } else {
            *out++ = (char)*s;
        }
    }
    *out++ = '"';
    *out = '\0';
    return out;
}

static int start_record(const char *path)
{
    struct utsname host;
    if (uname(&host) < 0)
        host.nodename[0] = '\0';
    char text[sizeof host.nodename * 6 + 64];
    char *at = stpcpy(text, "{\"host\":");
    at = json_string(at, host.nodename);
    sprintf(at, ",\"pid\":%ld}", (long)getpid());
    return write_record(path, text);
}

/* `[15,10]`: the signals the batch system sent, as far as the handlers have
 * noted them (an item is in place before the count shows it). */
static void signals_json(char out[static N_CAUGHT * 12 + 3])
{
    int count = n_received;
    *out++ = '[';
    for (int i = 0; i < count; i++)
        out += sprintf(out, i ? ",%d" : "%d", (int)received[i]);
    strcpy(out, "]");
}

static double timeval_seconds(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

/* Room for the exit records: numbers and fixed names only, no path (snprintf
 * would cut, never overflow, a number beyond belief). */
#define RECORD_SIZE 512

static void exit_record_ran(const struct spec *spec, int status, const struct rusage *usage,
                            double wall, double started)
{
    char text[RECORD_SIZE], signals[N_CAUGHT * 12 + 3];
    signals_json(signals);
    snprintf(text, sizeof text,
             "{\"status\":%d,\"cpu\":%.6f,\"maxrss\":%ld,\"wall\":%.6f,\"cpus\":%d,"
             "\"started\":%.6f,\"ended\":%.6f,\"signals\":%s}",
             status, timeval_seconds(usage->ru_utime) + timeval_seconds(usage->ru_stime),
             (long)usage->ru_maxrss, wall, spec->cpus, started, now(CLOCK_REALTIME), signals);
    write_record(spec->exit_file, text);
}

static void exit_record_failed(const struct spec *spec, const char *what, int error)
{
    char text[RECORD_SIZE], signals[N_CAUGHT * 12 + 3];
    signals_json(signals);
    snprintf(text, sizeof text,
             "{\"failed\":\"%s\",\"errno\":%d,\"cpus\":%d,\"started\":null,\"ended\":%.6f,"
             "\"signals\":%s}",
             what, error, spec->cpus, now(CLOCK_REALTIME), signals);
    write_record(spec->exit_file, text);
}

/* ------------------------------------------------------------------ start */

/* What the child failed at, as the exit record's "failed" says it. */
static const char *const failure_names[] = {
    "program", "stdin", "stdout_file", "stderr_file", "working_directory"};
enum failure { FAIL_PROGRAM, FAIL_STDIN, FAIL_STDOUT, FAIL_STDERR, FAIL_DIRECTORY };

/* What the child writes on the error pipe when it cannot exec. */
struct start_error {
    int what;  /* an enum failure */
    int error; /* errno */
};

/* Make fds 0, 1, 2 open (/dev/null for a closed one), so that no file opened
 * later lands on them. */
static void open_standard_fds(void)
{
    for (int fd = 0; fd < 3; fd++)
        if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
            if (open("/dev/null", O_RDWR) < 0)
                break; /* nothing better to do: the child's dup2 fills 0-2 anyway */
}

/* The job's env: ours with the spec's entries over it (same key replaced in
 * place, new keys appended), as jobwrap.py's {**os.environ, **env}. */
static char **job_environment(const struct spec *spec)
{
    if (spec->envc == 0)
        return environ;
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + (size_t)spec->envc + 1) * sizeof *env);
    if (env == NULL)
        return NULL;
    memcpy(env, environ, n * sizeof *env);
    for (int i = 0; i < spec->envc; i++) {
        size_t key = (size_t)(strchr(spec->env[i], '=') - spec->env[i]) + 1; /* with '=' */
        size_t j = 0;
        while (j < n && strncmp(env[j], spec->env[i], key) != 0)
            j++;
        env[j] = spec->env[i];
        if (j == n)
            n++;
    }
    env[n] = NULL;
    return env;
}

static const char *get_env(char **env, const char *key)
{
    size_t size = strlen(key);
    for (; *env; env++)
        if (strncmp(*env, key, size) == 0 && (*env)[size] == '=')
            return *env + size + 1;
    return NULL;
}

/* Close every fd >= 3 but `keep`: close_range where the kernel has it (Linux
 * 5.9), else the fds /proc lists, else every possible one. The tests build the
 * fallbacks with -DJOBWRAP_NO_CLOSE_RANGE, -DJOBWRAP_NO_PROC_FD. */
static void close_fds_except(int keep)
{
#if defined(SYS_close_range) && !defined(JOBWRAP_NO_CLOSE_RANGE)
    if ((keep == 3 || syscall(SYS_close_range, 3U, (unsigned)keep - 1, 0U) == 0)
        && syscall(SYS_close_range, (unsigned)keep + 1, ~0U, 0U) == 0)
        return;
#endif
#ifndef JOBWRAP_NO_PROC_FD
    DIR *dir = opendir("/proc/self/fd");
#else
    DIR *dir = NULL;
#endif
    if (dir != NULL) {
        struct dirent *entry;
        while ((entry = readdir(dir)) != NULL) {
            int fd = (int)decimal(entry->d_name, 3, INT_MAX);
            if (fd >= 3 && fd != keep && fd != dirfd(dir))
                close(fd);
        }
        closedir(dir);
        return;
    }
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > INT_MAX)
        max = 65536;
    for (int fd = 3; fd < max; fd++)
        if (fd != keep)
            close(fd);
}

/* exec argv[0] searched as os.execvpe searches it: as is when it has a '/',
 * else on the job's PATH ("/bin:/usr/bin" without one; an empty entry is the
 * bare name); the error is the first that is not ENOENT/ENOTDIR, else the last.
 * `buffer` holds any candidate. Returns (with errno) only on failure. */
static void exec_job(char **argv, char **env, char *buffer)
{
    const char *name = argv[0];
    if (strchr(name, '/') != NULL) {
        execve(name, argv, env);
        return;
    }
    const char *path = get_env(env, "PATH");
    if (path == NULL)
        path = "/bin:/usr/bin";
    int first_error = 0;
    for (;;) {
        size_t size = strcspn(path, ":");
        const char *colon = path + size;
        memcpy(buffer, path, size);
        if (size > 0 && buffer[size - 1] != '/')
            buffer[size++] = '/';
        strcpy(buffer + size, name);
        execve(buffer, argv, env);
        if (errno != ENOENT && errno != ENOTDIR && first_error == 0)
            first_error = errno;
        if (*colon == '\0')
            break;
        path = colon + 1;
    }
    if (first_error)
        errno = first_error;
}

static int open_or(const char *path, int flags)
{
    return open(*path ? path : "/dev/null", flags, PRIVATE_MODE);
}

/* Steps a-f of the child (docs/job-wrapper.md 2.4): READY for the exec, else the step
 * that failed, errno saying why. */
#define READY (-1)
static int prepare_child(const struct spec *spec, int error_pipe)
{
    /* a: default actions (an exec keeps ignored signals ignored), an empty mask */
    for (int i = 0; i < N_CAUGHT; i++)
        signal(caught_signals[i], SIG_DFL);
    signal(SIGALRM, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGXFSZ, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* b: its files, relative to our folder (0-2 are open: each lands >= 3) */
    int in = open_or(spec->stdin_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return FAIL_STDIN;
    int out = open_or(spec->stdout_file, OUTPUT_FLAGS);
    if (out < 0)
        return FAIL_STDOUT;
    int err = spec->join_stderrout ? out : open_or(spec->stderr_file, OUTPUT_FLAGS);
    if (err < 0)
        return FAIL_STDERR;
    /* c */
    if (dup2(in, 0) < 0)
        return FAIL_STDIN;
    if (dup2(out, 1) < 0)
        return FAIL_STDOUT;
    if (dup2(err, 2) < 0)
        return spec->join_stderrout ? FAIL_STDOUT : FAIL_STDERR;
    /* d: a session (and group) of its own, which we signal, when the system
     * signals the script alone; else it stays where the system's kill reaches */
    if (spec->reaches == REACH_SCRIPT)
        setsid();
    /* e */
    if (*spec->working_directory && chdir(spec->working_directory) < 0)
        return FAIL_DIRECTORY;
    /* f */
    close_fds_except(error_pipe);
    return READY;
}

/* The child, between fork and exec: never returns. A failure goes to the error
 * pipe as (what, errno), then exit 127. */
static void child(const struct spec *spec, char **env, char *buffer, int error_pipe)
    NORETURN;
static void child(const struct spec *spec, char **env, char *buffer, int error_pipe)
{
    struct start_error failure = {prepare_child(spec, error_pipe), 0};
    if (failure.what == READY) {
        exec_job(spec->argv, env, buffer); /* g */
        failure.what = FAIL_PROGRAM;
    }
    failure.error = errno;
    write_all(error_pipe, (const char *)&failure, sizeof failure);
    _exit(EXIT_NOT_STARTED);
}

/* A pipe whose ends close on exec. */
static int cloexec_pipe(int fds[2])
{
#ifdef __linux__
    return pipe2(fds, O_CLOEXEC);
#else
    if (pipe(fds) < 0)
        return -1;
    fcntl(fds[0], F_SETFD, FD_CLOEXEC);
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
#endif
}

/* Start the job: its pid, or 0 with *failure saying why it did not start. */
static pid_t start(const struct spec *spec, struct start_error *failure)
{
    failure->what = FAIL_PROGRAM;
    char **env = job_environment(spec);
    const char *path = env ? get_env(env, "PATH") : NULL;
    char *buffer = env ? malloc((path ? strlen(path) : 0) + strlen(spec->argv[0]) + 32) : NULL;
    int pipe_fds[2];
    if (buffer == NULL || cloexec_pipe(pipe_fds) < 0) {
        failure->error = errno;
        return 0;
    }
    /* the child must not run our handlers before it resets them */
    sigset_t handled, before;
    handled_set(&handled);
    sigprocmask(SIG_BLOCK, &handled, &before);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipe_fds[0]);
        child(spec, env, buffer, pipe_fds[1]);
    }
    failure->error = errno;
    /* from here on, a signal for the job goes to it: the job may have run (and
     * shown that it did) before the error pipe tells us */
    if (pid > 0)
        job_pid = pid;
    sigprocmask(SIG_SETMASK, &before, NULL);
    close(pipe_fds[1]);
    if (env != environ)
        free(env);
    free(buffer);
    if (pid < 0) {
        close(pipe_fds[0]);
        return 0;
    }
    /* EOF at once: the exec succeeded (the pipe is close-on-exec); data: it failed */
    size_t got = 0;
    for (;;) {
        ssize_t n = read(pipe_fds[0], (char *)failure + got, sizeof *failure - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 || (got += (size_t)n) == sizeof *failure)
            break;
    }
    close(pipe_fds[0]);
    if (got == 0)
        return pid;
    if (got < sizeof *failure) { /* cannot happen (8 bytes < PIPE_BUF): say so anyway */
        failure->what = FAIL_PROGRAM;
        failure->error = EIO;
    }
    job_pid = 0; /* before its pid may be reused */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

/* Append `jobbridge: REASON` to the job's stderr file (its stdout when joined),
 * where its user looks first; worded as exits.start_failure / path_error. */
static void note_failure(const struct spec *spec, const struct start_error *failure)
{
    const char *target = spec->join_stderrout ? spec->stdout_file : spec->stderr_file;
    if (*target == '\0')
        return;
    const char *what = failure_names[failure->what];
    const char *reason = strerror(failure->error);
    const char *subject;
    switch (failure->what) {
    case FAIL_PROGRAM: subject = spec->argv[0]; break;
    case FAIL_STDIN: subject = spec->stdin_path; break;
    case FAIL_STDOUT: subject = spec->stdout_file; break;
    case FAIL_STDERR: subject = spec->stderr_file; break;
    default: subject = spec->working_directory; break;
    }
    if (*subject == '\0')
        subject = "/dev/null";
    size_t size = strlen(subject) + strlen(reason) + 96;
    char *note = malloc(size);
    if (note == NULL)
        return;
    if (failure->what == FAIL_PROGRAM)
        snprintf(note, size, "jobbridge: cannot start '%s': %s\n", subject, reason);
    else
        snprintf(note, size, "jobbridge: %s: cannot %s %s: %s\n", what,
                 failure->what == FAIL_DIRECTORY ? "enter" : "open", subject, reason);
    int fd = open(target, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, PRIVATE_MODE);
    if (fd >= 0) {
        write_all(fd, note, strlen(note));
        close(fd);
    }
    free(note);
}

/* ------------------------------------------------------------------- end */

/* End the way the job did, so that the batch system sees it too. */
static void end_like(int status) NORETURN;
static void end_like(int status)
{
    if (WIFEXITED(status))
        exit(WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        kill(getpid(), sig);
    }
    exit(1); /* a signal whose default is to go on */
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        dprintf(STDERR_FILENO, "usage: jobwrap SPEC\n");
        return EXIT_USAGE;
    }
    open_standard_fds();
    struct spec spec;
    read_spec(argv[1], &spec);
    install_handlers(&spec);
    if (*spec.start_file && start_record(spec.start_file) < 0)
        return EXIT_USAGE;

    struct start_error failure;
    /* the wall time counts from the fork: the job's exec is part of its run (and
     * then its cpu time never exceeds its wall time for being quick) */
    double began = now(CLOCK_MONOTONIC);
    pid_t pid = start(&spec, &failure);
    if (pid == 0) {
        note_failure(&spec, &failure);
        exit_record_failed(&spec, failure_names[failure.what], failure.error);
        return EXIT_NOT_STARTED;
    }
    if (warning_missed)
        killpg(pid, SIGKILL); /* the system's SIGKILL may be near: no grace left to give */
    double started = now(CLOCK_REALTIME);

    int status;
    struct rusage usage;
    while (wait4(pid, &status, 0, &usage) < 0)
        if (errno != EINTR) { /* cannot happen: it is our child */
            dprintf(STDERR_FILENO, "jobwrap: wait4: %s\n", strerror(errno));
            return 1;
        }
    /* warned, and the system SIGKILLs the script alone: what outlived the job's
     * leader in its group goes now, not left running after the wrapper */
    if (forward_signals && warning_signal && was_received(warning_signal))
        killpg(pid, SIGKILL);
    exit_record_ran(&spec, status, &usage, now(CLOCK_MONOTONIC) - began, started);
    end_like(status);
}
