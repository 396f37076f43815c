'use strict';
// One SDK step of tests/test_sdk_interop.py (the official @daytonaio/sdk
// against the quaverd a quaverfs mount uses), with nothing but
// DAYTONA_API_URL and DAYTONA_API_KEY:
//
//   node interop.js create NAME             -> {"id", "name", "state"}
//   node interop.js upload ID LOCAL REMOTE   the bytes of the local file
//   node interop.js download ID REMOTE LOCAL the sandbox's file, written locally
//   node interop.js session ID SESSION       -> {"session", "commands": [{id, command,
//                                               exitCode, stdout, stderr}]}
//   node interop.js delete ID
//
// Prints one JSON line (null when the step has nothing to tell); exits 1
// with the SDK's error on stderr when the step fails.

const fs = require('node:fs');
const { Daytona } = require('@daytonaio/sdk');

async function main() {
	const [step, ...args] = process.argv.slice(2);
	const daytona = new Daytona({
		apiUrl: process.env.DAYTONA_API_URL,
		apiKey: process.env.DAYTONA_API_KEY,
	});
	try {
		if (step === 'create') {
			const sb = await daytona.create({ name: args[0] });
			return { id: sb.id, name: sb.name, state: sb.state };
		}
		const sb = await daytona.get(args[0]);
		if (step === 'upload') {
			await sb.fs.uploadFile(fs.readFileSync(args[1]), args[2]);
			return null;
		}
		if (step === 'download') {
			fs.writeFileSync(args[2], await sb.fs.downloadFile(args[1]));
			return null;
		}
		if (step === 'session') {
			const session = await sb.process.getSession(args[1]);
			const commands = [];
			for (const c of session.commands || []) {
				const logs = await sb.process.getSessionCommandLogs(args[1], c.id);
				const now = await sb.process.getSessionCommand(args[1], c.id);
				commands.push({
					id: c.id,
					command: now.command,
					exitCode: now.exitCode ?? null,
					stdout: logs.stdout,
					stderr: logs.stderr,
				});
			}
			return { session: session.sessionId, commands };
		}
		if (step === 'delete') {
			await sb.delete(60, true);
			return null;
		}
		throw new Error(`unknown step ${step}`);
	} finally {
		await daytona[Symbol.asyncDispose]();
	}
}

main().then(
	(out) => console.log(JSON.stringify(out ?? null)),
	(err) => {
		console.error(`${err.constructor.name}: ${err.message}`);
		process.exitCode = 1;
	},
);
