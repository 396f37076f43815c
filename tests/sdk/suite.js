'use strict';
// Runs the official @daytonaio/sdk against a Daytona API (quaverd in the
// tests) with nothing but DAYTONA_API_URL and DAYTONA_API_KEY.
//
//   node suite.js GROUP...     groups: prepare control errors volumes
//                              snapshots files volumefiles keepalive
//                              process sessions sessionlogs pty
//
// One line per SDK call checked: "ok <call>" or "FAIL <call>: <error>", one
// "called <Class.method> <times>" per SDK method the script called, then
// "sdk: N ok, N FAIL". Every check looks at what the call returned (or what
// a later call shows), not only at it not throwing. The exit status is 1
// when any check failed. tests/test_sdk.py runs every group.

const assert = require('node:assert/strict');
const sdk = require('@daytonaio/sdk');

const { Daytona, DaytonaError, DaytonaBadRequestError, DaytonaNotFoundError, DaytonaTimeoutError } = sdk;

// A tag unique to this run, so list filters only see what this run made.
const RUN = process.env.SDK_SUITE_RUN || `r${process.pid}`;
// The sandbox the "prepare" group makes and the test harness then breaks
// (its files removed while quaverd is down), for recover().
const BROKEN_NAME = `sdk-broken-${RUN}`;
const LANGS = ['python', 'typescript', 'javascript'];

let passed = 0;
let failed = 0;

function describe(err) {
	if (err === undefined || err === null) return String(err);
	const name = err.constructor && err.constructor.name ? err.constructor.name : 'Error';
	const status = err.statusCode !== undefined ? ` (HTTP ${err.statusCode})` : '';
	const msg = String(err.message || err).replace(/\s+/g, ' ').slice(0, 400);
	return `${name}${status}: ${msg}`;
}

// One check may take this long; a call that hangs fails instead of holding
// up the rest.
const CHECK_TIMEOUT_MS = 20000;

function deadline(ms) {
	let timer;
	const promise = new Promise((_, reject) => {
		timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms);
	});
	return { promise, cancel: () => clearTimeout(timer) };
}

// Runs one check; returns its value, or undefined when it failed.
async function check(call, fn) {
	const limit = deadline(CHECK_TIMEOUT_MS);
	try {
		const value = await Promise.race([fn(), limit.promise]);
		passed++;
		console.log(`ok ${call}`);
		return value;
	} catch (err) {
		failed++;
		console.log(`FAIL ${call}: ${describe(err)}`);
		return undefined;
	} finally {
		limit.cancel();
	}
}

// Expects @promise to reject with an instance of @cls; returns the error.
async function rejects(promise, cls) {
	let value;
	try {
		value = await promise;
	} catch (err) {
		if (!(err instanceof cls))
			throw new Error(`expected ${cls.name}, got ${describe(err)}`);
		return err;
	}
	// Never print the value: SDK objects carry the API key in their headers.
	const what = value && value.constructor ? value.constructor.name : typeof value;
	throw new Error(`expected ${cls.name}, the call returned a ${what}`);
}

async function waitFor(what, fn, timeoutMs = 15000) {
	const deadline = Date.now() + timeoutMs;
	for (;;) {
		const value = await fn();
		if (value) return value;
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 100));
	}
}

async function listAll(daytona, query) {
	const out = [];
	for await (const s of daytona.list(query)) out.push(s);
	return out;
}

// The sandbox events the SDK's socket.io connection delivered, by sandbox id
// (daytona-api.md 9.3): its waits resolve on them, polling once a second
// only as a safety net.
const events = new Map();
const handleEvent = sdk.Sandbox.prototype.handleEvent;
sdk.Sandbox.prototype.handleEvent = function (eventName, data) {
	const raw = data && typeof data === 'object' ? (data.sandbox ?? data) : {};
	const seen = events.get(this.id) || [];
	seen.push(`${eventName}:${raw.state ?? data.newState ?? ''}`);
	events.set(this.id, seen);
	return handleEvent.call(this, eventName, data);
};
// What each refresh (the SDK's polls) saw, in the same timeline.
const refreshData = sdk.Sandbox.prototype.refreshData;
sdk.Sandbox.prototype.refreshData = async function (...args) {
	const value = await refreshData.apply(this, args);
	const seen = events.get(this.id) || [];
	seen.push(`poll:${this.state}`);
	events.set(this.id, seen);
	return value;
};

const daytona = new Daytona({
	apiUrl: process.env.DAYTONA_API_URL,
	apiKey: process.env.DAYTONA_API_KEY,
});

// Every SDK method this script calls itself (not the SDK's calls to its
// own methods), with how often: printed as "called <Class.method> <n>"
// before the summary, so the output lists every SDK call exercised.
const called = new Map();
function recordCalls(proto) {
	const cls = proto.constructor.name;
	for (const name of Object.getOwnPropertyNames(proto)) {
		const desc = Object.getOwnPropertyDescriptor(proto, name);
		if (name === 'constructor' || !desc || typeof desc.value !== 'function') continue;
		const fn = desc.value;
		proto[name] = function (...args) {
			// [0] "Error", [1] this wrapper, [2] the caller
			const caller = new Error().stack.split('\n')[2] || '';
			if (caller.includes(__filename)) called.set(`${cls}.${name}`, (called.get(`${cls}.${name}`) || 0) + 1);
			return fn.apply(this, args);
		};
	}
}
for (const proto of [
	Daytona.prototype,
	sdk.Sandbox.prototype,
	sdk.FileSystem.prototype,
	sdk.Process.prototype,
	sdk.PtyHandle.prototype,
	Object.getPrototypeOf(daytona.volume),
	Object.getPrototypeOf(daytona.snapshot),
])
	recordCalls(proto);

// Sandboxes this run made and has not deleted yet (deleted at the end, so
// the SDK's background connection has nothing left to follow).
const made = new Map();

async function create(params, options) {
	const sb = await daytona.create(params, options);
	made.set(sb.id, sb);
	return sb;
}

// create, checked: started, with the labels asked for.
async function createStarted(params) {
	const sb = await create(params);
	assert.ok(sb.id, 'no id');
	assert.equal(sb.state, 'started');
	assert.deepEqual(sb.labels, { ...sb.labels, ...(params.labels || {}) });
	return sb;
}

// Sandbox.delete, checked: on its way out, then gone.
async function remove(sb) {
	await sb.delete();
	made.delete(sb.id);
	assert.ok(['destroying', 'destroyed'].includes(sb.state), `state ${sb.state}`);
}

// ---- groups ------------------------------------------------------------------

const groups = {};

groups.prepare = async () => {
	await check('Daytona.create (sandbox to break for recover)', async () => {
		const sb = await daytona.create({ name: BROKEN_NAME, labels: { run: RUN } });
		assert.equal(sb.name, BROKEN_NAME);
		assert.equal(sb.state, 'started');
		console.log(`broken-id ${sb.id}`);
	});
};

groups.control = async () => {
	const byLang = {};
	for (const language of LANGS) {
		byLang[language] = await check(`Daytona.create({language: '${language}'})`, async () => {
			const sb = await create({ language, labels: { run: RUN, lang: language } });
			assert.ok(sb.id, 'no id');
			assert.equal(sb.state, 'started');
			assert.equal(sb.labels['code-toolbox-language'], language);
			assert.equal(sb.labels.run, RUN);
			assert.ok(sb.toolboxProxyUrl, 'no toolboxProxyUrl');
			return sb;
		});
	}
	const py = byLang.python;

	const named = await check("Daytona.create({name, envVars, autoStopInterval})", async () => {
		const sb = await create({
			name: `sdk-named-${RUN}`,
			envVars: { GREETING: 'hello' },
			labels: { run: RUN },
			autoStopInterval: 30,
		});
		assert.equal(sb.name, `sdk-named-${RUN}`);
		assert.deepEqual(sb.env, { GREETING: 'hello' });
		assert.equal(sb.autoStopInterval, 30);
		return sb;
	});

	await check('Daytona.get(id)', async () => {
		const got = await daytona.get(py.id);
		assert.equal(got.id, py.id);
		assert.equal(got.name, py.name);
		assert.equal(got.state, 'started');
		assert.equal(got.labels['code-toolbox-language'], 'python');
	});

	await check('Daytona.get(name)', async () => {
		const got = await daytona.get(`sdk-named-${RUN}`);
		assert.equal(got.id, named.id);
		assert.equal(got.env.GREETING, 'hello');
	});

	await check('Daytona.list({labels})', async () => {
		const all = await listAll(daytona, { labels: { run: RUN } });
		const want = [...LANGS.map((l) => byLang[l].id), named.id].sort();
		assert.deepEqual(all.map((s) => s.id).filter((id) => want.includes(id)).sort(), want);
		const js = await listAll(daytona, { labels: { run: RUN, lang: 'javascript' } });
		assert.deepEqual(js.map((s) => s.id), [byLang.javascript.id]);
		assert.equal(js[0].labels['code-toolbox-language'], 'javascript');
	});

	await check('Daytona.list({labels, limit: 1}) (cursor paging)', async () => {
		const paged = await listAll(daytona, { labels: { run: RUN }, limit: 1 });
		const whole = await listAll(daytona, { labels: { run: RUN } });
		assert.ok(paged.length >= 4, `only ${paged.length} items`);
		assert.deepEqual(paged.map((s) => s.id), whole.map((s) => s.id));
	});

	await check('Daytona.list({states})', async () => {
		const started = await listAll(daytona, { labels: { run: RUN }, states: ['started'] });
		assert.ok(started.some((s) => s.id === py.id));
		assert.ok(started.every((s) => s.state === 'started'));
		const errored = await listAll(daytona, { states: ['error'] });
		assert.deepEqual(errored.map((s) => s.name), [BROKEN_NAME]);
	});

	await check('Sandbox.setLabels', async () => {
		const labels = await py.setLabels({ run: RUN, lang: 'python', team: 'blue' });
		assert.deepEqual(labels, { run: RUN, lang: 'python', team: 'blue' });
		const got = await daytona.get(py.id);
		assert.deepEqual(got.labels, { run: RUN, lang: 'python', team: 'blue' });
		const blue = await listAll(daytona, { labels: { team: 'blue' } });
		assert.deepEqual(blue.map((s) => s.id), [py.id]);
	});

	await check('Sandbox.setAutostopInterval', async () => {
		await py.setAutostopInterval(42);
		assert.equal(py.autoStopInterval, 42);
		assert.equal((await daytona.get(py.id)).autoStopInterval, 42);
	});

	await check('Sandbox.getPreviewLink', async () => {
		const link = await py.getPreviewLink(8080);
		assert.match(link.url, /^https?:\/\//);
		assert.ok(link.token, 'no token');
		const again = await py.getPreviewLink(8080);
		assert.equal(again.token, link.token, 'the token changes between calls');
	});

	const sb = named;
	await check('Sandbox.stop', async () => {
		await sb.stop();
		assert.equal(sb.state, 'stopped');
		assert.equal((await daytona.get(sb.id)).state, 'stopped');
	});

	await check('Sandbox.start', async () => {
		await sb.start();
		assert.equal(sb.state, 'started');
		assert.equal((await daytona.get(sb.id)).state, 'started');
	});

	await check('Sandbox.archive', async () => {
		await sb.stop();
		await sb.archive();
		assert.ok(['archiving', 'archived'].includes(sb.state), `state ${sb.state}`);
		await waitFor('archived', async () => {
			await sb.refreshData();
			return sb.state === 'archived';
		});
	});

	await check('Sandbox.start (from archived)', async () => {
		await sb.start();
		assert.equal(sb.state, 'started');
		assert.equal((await daytona.get(sb.id)).state, 'started');
	});

	await check('socket.io: sandbox.state.updated events reach the SDK', async () => {
		const seen = events.get(sb.id) || [];
		for (const state of ['stopped', 'started', 'archived'])
			assert.ok(seen.includes(`sandbox.state.updated:${state}`), `no ${state} event: ${seen.join(' ')}`);
	});

	await check('Sandbox.start: the wait ends on the started event, not on a poll', async () => {
		// A restore lasts --transition-delay (0.8 s); while it has events the
		// SDK polls once a second as a safety net only.
		await sb.stop();
		await sb.archive();
		await waitFor('archived', async () => {
			await sb.refreshData();
			return sb.state === 'archived';
		});
		const before = (events.get(sb.id) || []).length;
		await sb.start();
		assert.equal(sb.state, 'started');
		const during = (events.get(sb.id) || []).slice(before);
		const first = during.findIndex((e) => e.endsWith(':started'));
		assert.equal(during[first], 'sandbox.state.updated:started', during.join(' '));
	});

	await check('Sandbox.recover', async () => {
		const broken = await daytona.get(BROKEN_NAME);
		assert.equal(broken.state, 'error');
		assert.equal(broken.recoverable, true);
		assert.ok(broken.errorReason, 'no errorReason');
		await broken.recover();
		assert.equal(broken.state, 'started');
		assert.equal((await daytona.get(BROKEN_NAME)).state, 'started');
		made.set(broken.id, broken);
	});

	await check('Sandbox.delete', async () => {
		const ts = byLang.typescript;
		await remove(ts);
		assert.ok(['destroying', 'destroyed'].includes(ts.state), `state ${ts.state}`);
		await waitFor('sandbox gone', async () => {
			try {
				const got = await daytona.get(ts.id);
				assert.equal(got.state, 'destroying');
				return false;
			} catch (err) {
				if (err instanceof DaytonaNotFoundError) return true;
				throw err;
			}
		});
		const left = await listAll(daytona, { labels: { run: RUN, lang: 'typescript' } });
		assert.deepEqual(left, []);
	});

	await check('Daytona.delete(sandbox, timeout, wait=true)', async () => {
		await daytona.delete(byLang.javascript, 30, true);
		made.delete(byLang.javascript.id);
		await rejects(daytona.get(byLang.javascript.id), DaytonaNotFoundError);
	});
};

groups.errors = async () => {
	await check('Daytona.get(missing) -> DaytonaNotFoundError', async () => {
		const err = await rejects(daytona.get(`sdk-missing-${RUN}`), DaytonaNotFoundError);
		assert.equal(err.statusCode, 404);
		assert.match(err.message, new RegExp(`sdk-missing-${RUN} not found`));
	});

	await check('Daytona.create(bad name) -> DaytonaBadRequestError with the quaverd message', async () => {
		const err = await rejects(daytona.create({ name: 'no spaces allowed' }), DaytonaBadRequestError);
		assert.equal(err.statusCode, 400);
		assert.match(err.message, /^Invalid sandbox name "no spaces allowed": a name is 1 to 63 characters/);
		const list = await listAll(daytona, { name: 'no spaces' });
		assert.deepEqual(list, [], 'a refused create made a sandbox');
	});

	const sb = await check('Daytona.create (for error paths)', async () => {
		const s = await create({ labels: { run: RUN } });
		await s.stop();
		assert.equal(s.state, 'stopped');
		return s;
	});

	await check('Sandbox.stop (already stopped) -> DaytonaBadRequestError with the quaverd message', async () => {
		const err = await rejects(sb.stop(), DaytonaBadRequestError);
		assert.equal(err.statusCode, 400);
		assert.match(err.message, /Sandbox is not in a stoppable state \(state: stopped\)/);
	});

	await check('Sandbox.recover (not in error) -> DaytonaBadRequestError with the quaverd message', async () => {
		const err = await rejects(sb.recover(), DaytonaBadRequestError);
		assert.equal(err.statusCode, 400);
		assert.match(err.message, /Sandbox is not in a recoverable state \(state: stopped\)/);
	});

	await check('Sandbox.start(timeout) -> DaytonaTimeoutError', async () => {
		// quaverd runs with --transition-delay, so a restore lasts longer
		// than this timeout.
		await sb.archive();
		await waitFor('archived', async () => {
			await sb.refreshData();
			return sb.state === 'archived';
		});
		const err = await rejects(sb.start(0.3), DaytonaTimeoutError);
		assert.match(err.message, /time/i);
		await sb.waitUntilStarted(30);
		assert.equal(sb.state, 'started');
	});

	await check('Daytona.get with a wrong API key -> DaytonaAuthenticationError', async () => {
		const wrong = new Daytona({ apiUrl: process.env.DAYTONA_API_URL, apiKey: 'not-the-key' });
		try {
			const err = await rejects(wrong.get(sb.id), sdk.DaytonaAuthenticationError);
			assert.equal(err.statusCode, 401);
		} finally {
			await wrong[Symbol.asyncDispose]();
		}
	});

	await check('Volume.get(missing) -> DaytonaNotFoundError', async () => {
		await rejects(daytona.volume.get(`sdk-novol-${RUN}`), DaytonaNotFoundError);
	});

	await check('Snapshot.get(missing) -> DaytonaNotFoundError', async () => {
		await rejects(daytona.snapshot.get(`sdk-nosnap-${RUN}`), DaytonaNotFoundError);
	});
};

groups.volumes = async () => {
	const name = `sdk-vol-${RUN}`;
	const vol = await check('Volume.get(name, true) then ready', async () => {
		const v = await daytona.volume.get(name, true);
		assert.equal(v.name, name);
		assert.ok(['pending_create', 'creating', 'ready'].includes(v.state), `state ${v.state}`);
		return await waitFor('volume ready', async () => {
			const now = await daytona.volume.get(name);
			assert.equal(now.id, v.id);
			return now.state === 'ready' ? now : null;
		});
	});

	await check('Volume.list', async () => {
		const all = await daytona.volume.list();
		assert.ok(all.some((v) => v.id === vol.id && v.name === name));
	});

	await check('Daytona.create({volumes: [{volumeId, mountPath, subpath}]})', async () => {
		const sb = await create({
			labels: { run: RUN },
			volumes: [{ volumeId: vol.id, mountPath: '/home/daytona/data', subpath: 'users/alice' }],
		});
		assert.equal(sb.state, 'started');
		assert.equal(sb.volumes.length, 1);
		assert.equal(sb.volumes[0].volumeId, vol.id);
		assert.equal(sb.volumes[0].mountPath, '/home/daytona/data');
		assert.equal(sb.volumes[0].subpath, 'users/alice');
		const got = await daytona.get(sb.id);
		assert.equal(got.volumes[0].subpath, 'users/alice');
		await remove(sb);
	});

	await check('Volume.delete', async () => {
		await daytona.volume.delete(vol);
		await waitFor('volume gone', async () => {
			try {
				await daytona.volume.get(name);
				return false;
			} catch (err) {
				if (err instanceof DaytonaNotFoundError) return true;
				throw err;
			}
		});
	});
};

groups.snapshots = async () => {
	const snapName = `sdk-snap-${RUN}`;
	const src = await check('Daytona.create (snapshot source)', async () => {
		const sb = await create({ labels: { run: RUN } });
		assert.equal(sb.state, 'started');
		return sb;
	});

	await check('Sandbox.createSnapshot', async () => {
		await src.createSnapshot(snapName);
		assert.equal(src.state, 'started', 'the sandbox goes back to its state');
	});

	const snap = await check('Snapshot.get(name)', async () => {
		const s = await daytona.snapshot.get(snapName);
		assert.equal(s.name, snapName);
		assert.equal(s.state, 'active');
		return s;
	});

	await check('Snapshot.get(id)', async () => {
		const s = await daytona.snapshot.get(snap.id);
		assert.equal(s.name, snapName);
	});

	await check('Snapshot.list', async () => {
		const page = await daytona.snapshot.list();
		assert.ok(page.items.some((s) => s.id === snap.id && s.name === snapName));
		assert.ok(page.total >= 1);
		const named = await daytona.snapshot.list({ name: snapName });
		assert.deepEqual(named.items.map((s) => s.id), [snap.id]);
	});

	await check('Daytona.create({snapshot})', async () => {
		const sb = await create({ snapshot: snapName, labels: { run: RUN } });
		assert.equal(sb.state, 'started');
		assert.equal(sb.snapshot, snapName);
		await remove(sb);
	});

	await check('Snapshot.delete', async () => {
		await daytona.snapshot.delete(snap);
		await waitFor('snapshot gone', async () => {
			try {
				await daytona.snapshot.get(snap.id);
				return false;
			} catch (err) {
				if (err instanceof DaytonaNotFoundError) return true;
				throw err;
			}
		});
		const page = await daytona.snapshot.list({ name: snapName });
		assert.deepEqual(page.items, []);
	});
};

groups.files = async () => {
	const sb = await check('Daytona.create (files)', async () => {
		const s = await create({ labels: { run: RUN } });
		assert.equal(s.state, 'started');
		return s;
	});
	const fs = sb.fs;
	const dir = '/home/daytona/sdkfiles';
	const bytes = Buffer.alloc(70000);
	for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 8)) & 0xff;
	const text = 'first line\nthe needle is here\nlast line\n';

	await check('fs.createFolder', async () => {
		await fs.createFolder(dir, '755');
		const info = await fs.getFileDetails(dir);
		assert.equal(info.isDir, true);
		assert.equal(info.permissions, '0755');
	});

	await check('fs.uploadFile(Buffer)', async () => {
		await fs.uploadFile(bytes, `${dir}/blob.bin`);
		await fs.uploadFile(Buffer.from(text), `${dir}/notes.txt`);
		const info = await fs.getFileDetails(`${dir}/blob.bin`);
		assert.equal(info.size, bytes.length);
	});

	await check('fs.downloadFile', async () => {
		const got = await fs.downloadFile(`${dir}/blob.bin`);
		assert.ok(Buffer.isBuffer(got));
		assert.ok(got.equals(bytes), 'the downloaded bytes differ');
	});

	await check('fs.listFiles', async () => {
		const list = await fs.listFiles(dir);
		const byName = Object.fromEntries(list.map((f) => [f.name, f]));
		assert.deepEqual(Object.keys(byName).sort(), ['blob.bin', 'notes.txt']);
		assert.equal(byName['blob.bin'].size, bytes.length);
		assert.equal(byName['blob.bin'].isDir, false);
	});

	await check('fs.getFileDetails', async () => {
		const info = await fs.getFileDetails(`${dir}/notes.txt`);
		assert.equal(info.name, 'notes.txt');
		assert.equal(info.size, Buffer.byteLength(text));
		assert.equal(info.isDir, false);
		assert.match(info.mode, /^-[rwx-]{9}$/);
		assert.ok(!Number.isNaN(Date.parse(info.modifiedAt)), `modifiedAt ${info.modifiedAt}`);
	});

	await check('fs.setFilePermissions', async () => {
		await fs.setFilePermissions(`${dir}/notes.txt`, { mode: '600' });
		const info = await fs.getFileDetails(`${dir}/notes.txt`);
		assert.equal(info.permissions, '0600');
		assert.equal(info.mode, '-rw-------');
	});

	await check('fs.findFiles', async () => {
		const matches = await fs.findFiles(dir, 'needle');
		assert.equal(matches.length, 1);
		assert.equal(matches[0].file, `${dir}/notes.txt`);
		assert.equal(matches[0].line, 2);
		assert.equal(matches[0].content, 'the needle is here');
	});

	await check('fs.searchFiles', async () => {
		const res = await fs.searchFiles(dir, '*.txt');
		assert.deepEqual(res.files, [`${dir}/notes.txt`]);
	});

	await check('fs.replaceInFiles', async () => {
		const res = await fs.replaceInFiles([`${dir}/notes.txt`], 'needle', 'thread');
		assert.equal(res.length, 1);
		assert.equal(res[0].success, true);
		const got = (await fs.downloadFile(`${dir}/notes.txt`)).toString();
		assert.equal(got, text.replace('needle', 'thread'));
	});

	await check('fs.moveFiles', async () => {
		await fs.moveFiles(`${dir}/notes.txt`, `${dir}/moved.txt`);
		const names = (await fs.listFiles(dir)).map((f) => f.name).sort();
		assert.deepEqual(names, ['blob.bin', 'moved.txt']);
	});

	await check('fs.deleteFile', async () => {
		await fs.deleteFile(`${dir}/moved.txt`);
		await rejects(fs.getFileDetails(`${dir}/moved.txt`), DaytonaNotFoundError);
		await fs.deleteFile(dir, true);
		await rejects(fs.getFileDetails(dir), DaytonaNotFoundError);
	});

	await check('fs.downloadFile(missing) -> DaytonaError', async () => {
		await rejects(fs.downloadFile(`${dir}/nothing-here`), DaytonaError);
	});
};

groups.keepalive = async () => {
	// Back-to-back calls on one keep-alive connection: a download of a few
	// KB, then a POST with a body (another download, a replace).
	const sb = await check('Daytona.create (keep-alive)', async () => createStarted({ labels: { run: RUN } }));
	const path = '/home/daytona/ka.txt';
	const content = 'x'.repeat(5000) + '\n';
	await check('fs.uploadFile (keep-alive)', async () => {
		await sb.fs.uploadFile(Buffer.from(content), path);
		assert.equal((await sb.fs.getFileDetails(path)).size, content.length);
	});
	await check('fs.downloadFile twice in a row', async () => {
		assert.equal((await sb.fs.downloadFile(path)).toString(), content);
		assert.equal((await sb.fs.downloadFile(path)).toString(), content);
	});
	await check('fs.downloadFile then fs.replaceInFiles', async () => {
		assert.equal((await sb.fs.downloadFile(path)).toString(), content);
		const res = await sb.fs.replaceInFiles([path], 'xx', 'y');
		assert.equal(res[0].success, true);
	});
};

groups.process = async () => {
	const sbs = {};
	for (const language of LANGS) {
		sbs[language] = await check(`Daytona.create({language: '${language}'}) (process)`, async () => {
			const s = await create({ language, labels: { run: RUN } });
			assert.equal(s.state, 'started');
			return s;
		});
	}
	const proc = sbs.python.process;

	await check('process.executeCommand', async () => {
		const res = await proc.executeCommand('echo hello; echo oops >&2');
		assert.equal(res.exitCode, 0);
		assert.equal(res.result, 'hello\noops\n');
	});

	await check('process.executeCommand (exit code)', async () => {
		const res = await proc.executeCommand('exit 3');
		assert.equal(res.exitCode, 3);
	});

	await check('process.executeCommand (cwd)', async () => {
		const res = await proc.executeCommand('pwd', '/tmp');
		assert.equal(res.exitCode, 0);
		assert.equal(res.result.trim(), '/tmp');
	});

	await check('process.executeCommand (env)', async () => {
		const res = await proc.executeCommand('echo "$SDK_A-$SDK_B"', undefined, {
			SDK_A: 'one',
			SDK_B: 'two words',
		});
		assert.equal(res.result, 'one-two words\n');
	});

	await check('process.executeCommand (timeout)', async () => {
		const started = Date.now();
		let res;
		try {
			res = await proc.executeCommand('sleep 20', undefined, undefined, 1);
		} catch (err) {
			assert.ok(err instanceof DaytonaTimeoutError, describe(err));
			assert.ok(Date.now() - started < 10000, 'the timeout was not applied');
			return;
		}
		throw new Error(`no timeout: ${JSON.stringify(res)}`);
	});

	const programs = {
		python: 'import sys\nprint(6 * 7)\nprint(sys.argv[1:])',
		javascript: 'console.log(6 * 7); console.log(process.argv.slice(2))',
		typescript: 'const n: number = 6 * 7; console.log(n)',
	};
	for (const language of LANGS) {
		await check(`process.codeRun (${language})`, async () => {
			const res = await sbs[language].process.codeRun(programs[language]);
			assert.equal(res.exitCode, 0, res.result);
			assert.equal(res.result.split('\n')[0], '42');
		});
	}

	await check('process.codeRun (error exit)', async () => {
		const res = await proc.codeRun('import sys\nprint("bye")\nsys.exit(5)');
		assert.equal(res.exitCode, 5);
		assert.equal(res.result, 'bye\n');
	});
};

groups.volumefiles = async () => {
	// A file written under a sandbox's subpath mount is seen by a sandbox
	// that mounts the whole volume, under that subpath.
	const name = `sdk-volfiles-${RUN}`;
	const vol = await check('Volume.get(name, true) then ready (files)', async () => {
		await daytona.volume.get(name, true);
		return await waitFor('volume ready', async () => {
			const now = await daytona.volume.get(name);
			return now.state === 'ready' ? now : null;
		});
	});
	const alice = await check('Daytona.create (volume subpath mount)', async () => {
		const sb = await createStarted({
			labels: { run: RUN },
			volumes: [{ volumeId: vol.id, mountPath: '/home/daytona/data', subpath: 'users/alice' }],
		});
		assert.deepEqual(sb.volumes.map((v) => [v.volumeId, v.mountPath, v.subpath]), [
			[vol.id, '/home/daytona/data', 'users/alice'],
		]);
		return sb;
	});
	const whole = await check('Daytona.create (whole volume mount)', async () => {
		const sb = await createStarted({
			labels: { run: RUN },
			volumes: [{ volumeId: vol.name, mountPath: '/mnt/vol' }],
		});
		assert.deepEqual(sb.volumes.map((v) => [v.volumeId, v.mountPath]), [[vol.id, '/mnt/vol']]);
		return sb;
	});

	await check('fs.uploadFile into a subpath mount, read through the whole volume', async () => {
		await alice.fs.uploadFile(Buffer.from('shared bytes\n'), '/home/daytona/data/hello.txt');
		const got = await whole.fs.downloadFile('/mnt/vol/users/alice/hello.txt');
		assert.equal(got.toString(), 'shared bytes\n');
		const names = (await whole.fs.listFiles('/mnt/vol/users')).map((f) => f.name);
		assert.deepEqual(names, ['alice']);
	});

	await check('Sandbox.delete then Volume.delete', async () => {
		await alice.delete(60, true);
		made.delete(alice.id);
		await whole.delete(60, true);
		made.delete(whole.id);
		await rejects(daytona.get(alice.id), DaytonaNotFoundError);
		await daytona.volume.delete(vol);
		await waitFor('volume gone', async () => {
			try {
				await daytona.volume.get(name);
				return false;
			} catch (err) {
				if (err instanceof DaytonaNotFoundError) return true;
				throw err;
			}
		});
	});
};

groups.sessions = async () => {
	const sb = await check('Daytona.create (sessions)', async () => createStarted({ labels: { run: RUN } }));
	const proc = sb.process;
	const sid = `sdk-session-${RUN}`;

	await check('process.createSession', async () => {
		await proc.createSession(sid);
		const got = await proc.getSession(sid);
		assert.equal(got.sessionId, sid);
		assert.deepEqual(got.commands || [], []);
	});

	await check('process.listSessions', async () => {
		const all = await proc.listSessions();
		assert.ok(all.some((x) => x.sessionId === sid), JSON.stringify(all.map((x) => x.sessionId)));
	});

	await check('process.executeSessionCommand (sync, state kept)', async () => {
		const r1 = await proc.executeSessionCommand(sid, { command: 'export SDK_V=kept; cd /tmp' });
		assert.equal(r1.exitCode, 0);
		const r2 = await proc.executeSessionCommand(sid, { command: 'echo "$SDK_V $(pwd)"' });
		assert.equal(r2.exitCode, 0);
		assert.equal((r2.output || r2.stdout).trim(), 'kept /tmp');
	});

	const cmd = await check('process.executeSessionCommand (runAsync)', async () => {
		const r = await proc.executeSessionCommand(sid, {
			command: 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done; exit 4',
			runAsync: true,
		});
		assert.ok(r.cmdId, 'no cmdId');
		assert.equal(r.exitCode ?? undefined, undefined, 'an async command has no exit code yet');
		return r;
	});

	await check('process.getSessionCommand (exit code)', async () => {
		const c = await waitFor('exit code', async () => {
			const now = await proc.getSessionCommand(sid, cmd.cmdId);
			return now.exitCode !== undefined && now.exitCode !== null ? now : null;
		});
		assert.equal(c.exitCode, 4);
	});

	await check('process.getSessionCommandLogs (whole)', async () => {
		const logs = await proc.getSessionCommandLogs(sid, cmd.cmdId);
		assert.equal(logs.stdout, 'out1\nout2\nout3\n');
		assert.equal(logs.stderr, 'err1\nerr2\nerr3\n');
	});

	await check('process.deleteSession', async () => {
		await proc.deleteSession(sid);
		await rejects(proc.getSession(sid), DaytonaNotFoundError);
	});
};

groups.sessionlogs = async () => {
	// getSessionCommandLogs with callbacks follows the logs over a websocket.
	const sb = await check('Daytona.create (session logs)', async () => createStarted({ labels: { run: RUN } }));
	const proc = sb.process;
	const sid = `sdk-logs-${RUN}`;
	const cmd = await check('process.executeSessionCommand (runAsync, for streamed logs)', async () => {
		await proc.createSession(sid);
		const r = await proc.executeSessionCommand(sid, {
			command: 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.3; done; exit 4',
			runAsync: true,
		});
		assert.ok(r.cmdId, 'no cmdId');
		return r;
	});

	await check('process.getSessionCommandLogs (streamed)', async () => {
		let out = '';
		let err = '';
		await proc.getSessionCommandLogs(sid, cmd.cmdId, (c) => (out += c), (c) => (err += c));
		assert.equal(out, 'out1\nout2\nout3\n');
		assert.equal(err, 'err1\nerr2\nerr3\n');
	});

	await check('process.getSessionCommand after streamed logs', async () => {
		const c = await proc.getSessionCommand(sid, cmd.cmdId);
		assert.equal(c.exitCode, 4, 'the logs ended before the command did');
	});
};

groups.pty = async () => {
	const sb = await check('Daytona.create (pty)', async () => createStarted({ labels: { run: RUN } }));
	let output = '';
	const decoder = new TextDecoder();
	const pty = await check('process.createPty', async () => {
		const h = await sb.process.createPty({
			id: `sdk-pty-${RUN}`,
			cols: 100,
			rows: 30,
			envs: { SDK_PTY_SHORT: 'short' },
			onData: (d) => {
				output += decoder.decode(d, { stream: true });
			},
		});
		await h.waitForConnection();
		assert.ok(h.isConnected());
		return h;
	});

	await check('PtyHandle.sendInput (output comes back)', async () => {
		await pty.sendInput('echo pty-$((6*7)) $SDK_PTY_SHORT\n');
		await waitFor('pty output', async () => output.includes('pty-42 short'));
	});

	await check('PtyHandle.resize', async () => {
		const info = await pty.resize(120, 40);
		assert.equal(info.cols, 120);
		assert.equal(info.rows, 40);
		await pty.sendInput('stty size\n');
		await waitFor('stty size', async () => output.includes('40 120'));
	});

	await check('process.listPtySessions', async () => {
		const all = await sb.process.listPtySessions();
		assert.ok(all.some((x) => x.id === `sdk-pty-${RUN}`), JSON.stringify(all));
	});

	await check('PtyHandle.wait (exit code)', async () => {
		await pty.sendInput('exit 3\n');
		const res = await pty.wait();
		assert.equal(res.exitCode, 3);
	});

	await check('process.createPty({envs}) (a subprotocol list over libwebsockets 4.1\'s limits)', async () => {
		// The envs travel base64url-encoded in a subprotocol token: this one is
		// a token of 300 characters in a list of 350.
		const id = `sdk-pty-envs-${RUN}`;
		const envs = { SDK_PTY_A: 'alpha beta', SDK_PTY_LONG: 'x'.repeat(200) };
		let out3 = '';
		const h = await sb.process.createPty({
			id,
			cwd: '/tmp',
			envs,
			onData: (d) => (out3 += decoder.decode(d, { stream: true })),
		});
		await h.waitForConnection();
		await h.sendInput('echo "A=$SDK_PTY_A L=${#SDK_PTY_LONG} D=$(pwd)"\n');
		await waitFor('envs in the shell', async () => out3.includes('A=alpha beta L=200 D=/tmp'));
		const info = await sb.process.getPtySessionInfo(id);
		assert.deepEqual(info.envs, envs);
		assert.equal(info.cwd, '/tmp');
		await h.sendInput('exit 0\n');
		assert.equal((await h.wait()).exitCode, 0);
	});

	await check('PtyHandle.kill', async () => {
		let out2 = '';
		const h = await sb.process.createPty({ id: `sdk-pty2-${RUN}`, onData: (d) => (out2 += decoder.decode(d)) });
		await h.waitForConnection();
		await h.kill();
		const res = await h.wait();
		assert.notEqual(res.exitCode, 0);
		await rejects(sb.process.getPtySessionInfo(`sdk-pty2-${RUN}`), DaytonaNotFoundError);
	});
};

// ---- main ----------------------------------------------------------------------

async function main() {
	const names = process.argv.slice(2);
	for (const name of names) {
		if (!groups[name]) {
			console.log(`FAIL unknown group ${name}`);
			failed++;
			continue;
		}
		await groups[name]();
	}
	if (!names.includes('prepare')) {
		for (const sb of [...made.values()]) {
			await check(`Sandbox.delete (cleanup ${sb.name})`, () => remove(sb));
		}
	}
	for (const [name, n] of [...called.entries()].sort()) console.log(`called ${name} ${n}`);
	console.log(`sdk: ${passed} ok, ${failed} FAIL`);
	process.exitCode = failed ? 1 : 0;
}

main().catch((err) => {
	console.log(`FAIL suite: ${describe(err)}`);
	process.exitCode = 1;
});
