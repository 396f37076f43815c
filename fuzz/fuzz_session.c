/*
 * libFuzzer target: the session-log demultiplexer of quaverd (session.c's
 * stream_feed and take_marker, reached by including the file): a session
 * shell's stdout and stderr arrive in pieces of any size, with begin/end
 * markers (0x1e TOKEN B|E ID[:CODE] 0x1e) that cut them into commands'
 * logs, which the logs websocket later sends with the 01 01 01 / 02 02 02
 * prefixes. Input: records of one header byte (bit 0: the stream, bits
 * 1-7: the length) followed by that many bytes. Properties: no command logs
 * more bytes than its streams carried, and every log reads back whole.
 */
#include "../src/quaverd/session.c"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NCMDS 3
static const char *const cmd_ids[NCMDS] = {"11111111-aaaa-4bbb-8ccc-000000000001", "c2", "x"};
/* Under $TMPDIR (tools/test gives each run its own and removes it: a crash skips atexit). */
static char log_dir[4096];

static void remove_dir(void)
{
	rmdir(log_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct session *s;
	size_t pos = 0, fed = 0;

	if (!ready) {
		snprintf(log_dir, sizeof(log_dir), "%s/quaver-fuzz-session-XXXXXX",
			 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
		if (!mkdtemp(log_dir))
			abort();
		atexit(remove_dir);
		ready = true;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return 0;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->write_lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->stdin_fd = -1;
	s->shell.status_fd = -1;
	memcpy(s->token, "0123456789abcdef", TOKEN_LEN + 1);
	s->cmds = calloc(NCMDS, sizeof(*s->cmds));
	for (size_t i = 0; s->cmds && i < NCMDS; i++) {
		struct session_cmd *c = calloc(1, sizeof(*c));

		if (!c)
			break;
		copy_str(c->id, sizeof(c->id), cmd_ids[i]);
		snprintf(c->log_path, sizeof(c->log_path), "%s/%zu", log_dir, i);
		unlink(c->log_path);
		s->cmds[s->ncmds++] = c;
	}

	pthread_mutex_lock(&s->lock);
	while (pos < size) {
		int stream = data[pos] & 1;
		size_t len = data[pos] >> 1;

		pos++;
		if (len > size - pos)
			len = size - pos;
		if (len) {
			stream_feed(s, stream, (const char *)data + pos, len);
			fed += len;
		}
		pos += len;
	}
	finish_commands_locked(s);
	pthread_mutex_unlock(&s->lock);

	for (size_t i = 0; i < s->ncmds; i++) {
		struct buf out = BUF_INIT, err = BUF_INIT, combined = BUF_INIT;

		if (session_cmd_read(s->cmds[i], &out, &err, &combined) == 0 &&
		    (out.len + err.len != combined.len || out.len + err.len > fed + 64))
			abort();
		buf_free(&out);
		buf_free(&err);
		buf_free(&combined);
		cmd_free(s->cmds[i]);
	}
	free(s->cmds);
	buf_free(&s->pending[0]);
	buf_free(&s->pending[1]);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->write_lock);
	pthread_cond_destroy(&s->cv);
	free(s);
	return 0;
}
