'use strict';
// bench/sdk.js: issue 8's control-plane and process workloads done with the
// official @daytonaio/sdk (the copy tests/sdk's lock file installs), as a
// user would write them, against the same quaverd(s) as quaverfs. Run by
// bench/run:
//
//   node bench/sdk.js CONFIG.json
//
// CONFIG: {"api": {url, key} (sandboxes are made here), "fleet": {url, key}
// (holds the 1,000 sandboxes listed), "prefix", "creates", "concurrent",
// "rounds", "ptyKeys", "ptyFile", "ptySize", "bigOutput", "fleetSize"}.
// One JSON line per workload: {"workload", "tool": "sdk", "samples", "unit"}
// or {"workload", "tool": "sdk", "error"}; each result is checked first.

const path = require('node:path');
const fs = require('node:fs');
const { createRequire } = require('node:module');

const repo = path.dirname(__dirname);
const sdkRequire = createRequire(path.join(repo, 'tests', 'sdk', 'package.json'));
const { Daytona } = sdkRequire('@daytonaio/sdk');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const OUT_LINE = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLM';

function emit(rec) {
	process.stdout.write(JSON.stringify({ tool: 'sdk', ...rec }) + '\n');
}

function now() {
	return Number(process.hrtime.bigint()) / 1e9;
}

async function timed(workload, unit, fn) {
	try {
		const samples = await fn();
		emit({ workload, samples, unit });
	} catch (err) {
		emit({ workload, error: String((err && err.message) || err).slice(0, 300) });
	}
}

function client(which) {
	return new Daytona({ apiUrl: which.url, apiKey: which.key });
}

// A terminal through createPty: output collected, waits on patterns.
class Term {
	static async open(sb, id) {
		const t = new Term();
		t.chunks = [];
		t.text = '';
		t.bytes = 0;
		t.waiter = null;
		t.handle = await sb.process.createPty({
			id,
			cols: 120,
			rows: 40,
			onData: (d) => t.onData(d),
		});
		await t.handle.waitForConnection();
		return t;
	}

	onData(d) {
		this.bytes += d.length;
		// keep only a tail: the 100 MB run must not build a string of it
		this.text = (this.text + Buffer.from(d).toString('latin1')).slice(-4096);
		if (this.waiter && this.text.includes(this.waiter.pattern)) {
			const w = this.waiter;
			this.waiter = null;
			const i = this.text.indexOf(w.pattern);
			this.text = this.text.slice(i + w.pattern.length);
			w.resolve();
		}
	}

	until(pattern, ms = 60000) {
		return new Promise((resolve, reject) => {
			if (this.text.includes(pattern)) {
				this.text = this.text.slice(this.text.indexOf(pattern) + pattern.length);
				resolve();
				return;
			}
			const timer = setTimeout(() => {
				clearInterval(watch);
				reject(new Error(`no '${pattern}' within ${ms} ms`));
			}, ms);
			// quaverd (as Daytona) closes a client 256 messages behind: 1008
			const watch = setInterval(() => {
				if (this.handle.isConnected()) return;
				clearTimeout(timer);
				clearInterval(watch);
				const why = this.handle.error ? `: ${this.handle.error}` : '';
				reject(new Error(`the pty websocket closed after ${this.bytes} bytes${why}`));
			}, 200);
			this.waiter = {
				pattern,
				resolve: () => {
					clearTimeout(timer);
					clearInterval(watch);
					resolve();
				},
			};
		});
	}

	send(s) {
		return this.handle.sendInput(s);
	}

	async ready() {
		await this.send("echo QV''READY\n");
		await this.until('QVREADY');
		await this.until('$ ');
	}

	async close() {
		try {
			await this.handle.kill();
		} catch (e) {
			/* already gone */
		}
		try {
			await this.handle.disconnect();
		} catch (e) {
			/* already gone */
		}
	}
}

async function main() {
	const api = client(cfg.api);
	const fleet = client(cfg.fleet);
	const P = cfg.prefix;

	await timed('mkdir-to-started', 's', async () => {
		const times = [];
		for (let i = 0; i < cfg.creates; i++) {
			const t0 = now();
			const sb = await api.create({ name: `${P}c${i}` });
			times.push(now() - t0);
			if (sb.state !== 'started') throw new Error(`state ${sb.state} after create`);
		}
		return times;
	});

	await timed(`${cfg.concurrent} concurrent creates`, 's', async () => {
		const t0 = now();
		const all = await Promise.all(
			Array.from({ length: cfg.concurrent }, (_, i) => api.create({ name: `${P}cc${i}` })));
		const dt = now() - t0;
		if (!all.every((sb) => sb.state === 'started')) throw new Error('a sandbox is not started');
		return [dt];
	});

	// Listing and states of the fleet: Daytona.list() pages through them all.
	const listAll = async () => {
		const t0 = now();
		const states = [];
		for await (const sb of fleet.list()) states.push(sb.state);
		const dt = now() - t0;
		if (states.length < cfg.fleetSize) throw new Error(`listed ${states.length}`);
		if (!states.every((s) => s === 'started' || s === 'stopped')) throw new Error('bad state');
		return dt;
	};
	const lists = { cold: [], warm: [] };
	for (let r = 0; r < cfg.rounds; r++) {
		try {
			lists.cold.push(await listAll());
			lists.warm.push(await listAll());
		} catch (err) {
			lists.error = String(err.message || err);
			break;
		}
	}
	for (const [what, label] of [['ls -l', 'list'], ['cat state', 'state']]) {
		for (const temp of ['cold', 'warm']) {
			if (lists.error)
				emit({ workload: `${what} ${temp} (${cfg.fleetSize})`, error: lists.error });
			else
				emit({ workload: `${what} ${temp} (${cfg.fleetSize})`, samples: lists[temp],
					unit: 's', note: `Daytona.list() (${label})` });
		}
	}

	await timed('mkdir-to-first-command', 's', async () => {
		const times = [];
		for (let i = 0; i < cfg.rounds; i++) {
			const t0 = now();
			const sb = await api.create({ name: `${P}fc${i}` });
			const res = await sb.process.executeCommand('echo hi');
			times.push(now() - t0);
			if (res.exitCode !== 0 || res.result.trim() !== 'hi')
				throw new Error(`executeCommand gave ${res.exitCode} ${res.result.slice(0, 80)}`);
		}
		return times;
	});

	const sb = await api.get(cfg.sandbox);

	await timed('first output of a new run', 's', async () => {
		const times = [];
		for (let i = 0; i < Math.max(cfg.rounds, 20); i++) {
			const t0 = now();
			await sb.process.createSession(`${P}s${i}`);
			const r = await sb.process.executeSessionCommand(`${P}s${i}`, { command: 'echo hi' });
			times.push(now() - t0);
			if (r.exitCode !== 0 || (r.stdout || r.output || '').trim() !== 'hi')
				throw new Error(`executeSessionCommand gave ${JSON.stringify(r).slice(0, 120)}`);
		}
		return times;
	});

	await timed('50 MB command output', 's', async () => {
		const times = [];
		for (let i = 0; i < cfg.rounds; i++) {
			const t0 = now();
			const res = await sb.process.executeCommand(`yes ${OUT_LINE} | head -c ${cfg.bigOutput}`);
			times.push(now() - t0);
			if (res.result.length !== cfg.bigOutput || !res.result.endsWith(OUT_LINE + '\n'))
				throw new Error(`${res.result.length} bytes of output`);
		}
		return times;
	});

	await timed('pty echo round trip', 's', async () => {
		const t = await Term.open(sb, `${P}echo`);
		const times = [];
		try {
			await t.ready();
			const letters = 'abcdefghijklmnopqrstuvwxyz';
			for (let i = 0; i < cfg.ptyKeys; i++) {
				const ch = letters[i % 26];
				const t0 = now();
				const got = t.until(ch, 10000);
				await t.send(ch);
				await got;
				times.push(now() - t0);
				if (i % 26 === 25) {
					await t.send("\x15echo QV''MARK\n");
					await t.until('QVMARK');
					await t.until('$ ');
				}
			}
		} finally {
			await t.close();
		}
		return times;
	});

	await timed('pty throughput (cat 100 MB)', 'MB/s', async () => {
		const rates = [];
		for (let i = 0; i < cfg.rounds; i++) {
			const t = await Term.open(sb, `${P}tp${i}`);
			try {
				await t.ready();
				const start = t.bytes;
				const t0 = now();
				const done = t.until('QVEND', 120000);
				await t.send(`stty -echo; cat ${cfg.ptyFile}; echo QV''END\n`);
				await done;
				const dt = now() - t0;
				if (t.bytes - start < cfg.ptySize) throw new Error(`${t.bytes - start} bytes arrived`);
				rates.push(cfg.ptySize / 1e6 / dt);
			} finally {
				await t.close();
			}
		}
		return rates;
	});
}

main().then(
	() => process.exit(0),
	(err) => {
		emit({ workload: 'sdk', error: String((err && err.message) || err).slice(0, 300) });
		process.exit(1);
	});
