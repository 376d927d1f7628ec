// Run Python (the project's, with the repository on its path) and parse the JSON it prints:
// the node tests take their expected values from the engine itself, never from copies.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

function python() {
  if (process.env.WONDERZOOM_PYTHON) return process.env.WONDERZOOM_PYTHON;
  const venv = join(REPO, '.venv/bin/python');
  return existsSync(venv) ? venv : 'python3';
}

export function runPython(code) {
  const out = execFileSync(python(), ['-c', code], {
    cwd: REPO, env: { ...process.env, PYTHONPATH: REPO }, maxBuffer: 256 << 20, encoding: 'utf8',
  });
  return JSON.parse(out);
}
