/**
 * Every command README.md and docs/*.md show (`orchard …`, `npx orchard …`, `npm run …`, in code blocks and
 * inline code) exists, and every flag it names is answered by that command's --help. orchard's own commands are
 * asked in this process (main() with captured output); an npm script that is not orchard is asked once, by
 * `npm run -s <script> -- --help`, and only when the documents name flags for it. Answers are cached.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, orchard } from './helpers/cli';

export interface DocCommand {
  readonly where: string;
  readonly text: string;
  readonly tool: 'orchard' | 'npm';
  /** orchard: the subcommand ('' for `orchard --help`); npm: the script. */
  readonly name: string;
  readonly flags: readonly string[];
}

const FLAG = /^--?[a-zA-Z][\w-]*/;

/** The commands a Markdown text shows, with where (file:line) and the flags each names. */
export function commandsIn(markdown: string, file: string): DocCommand[] {
  const found: DocCommand[] = [];
  const lines = markdown.split('\n');
  let fence: string | undefined;
  const spans: { line: number; text: string }[] = [];
  lines.forEach((line, i) => {
    const opening = /^\s*(```+)(\S*)/.exec(line);
    if (opening) {
      fence = fence === undefined ? opening[2] || 'text' : undefined;
      return;
    }
    if (fence === 'mermaid') return;
    if (fence !== undefined) {
      // A shell line: continuation backslashes joined, the comment cut off.
      spans.push({ line: i + 1, text: line.replace(/^\s*\$\s+/, '') });
      return;
    }
    for (const match of line.matchAll(/`([^`]+)`/g)) spans.push({ line: i + 1, text: match[1]! });
  });
  for (const { line, text } of spans) {
    // Commands end at a comment, `&&`, `;` or a pipe (not the `|` between alternatives: `[-k N | --variance F]`).
    for (const segment of text.split(/\s(?:#|&&|\|\||;)\s?|\s\|\s(?!-)/)) {
      const command = /(?:^|\s|\()(?:npx\s+)?orchard((?:\s+\S+)*)/.exec(segment);
      const npm = /(?:^|\s|\()npm\s+run\s+(?:-s\s+)?([\w:.-]+)((?:\s+\S+)*)/.exec(segment);
      if (npm) {
        const [script, rest = ''] = [npm[1]!, npm[2]!];
        const words = rest.trim().split(/\s+/).filter(Boolean);
        const after = words.indexOf('--');
        const passed = after >= 0 ? words.slice(after + 1) : [];
        if (script === 'orchard' || script === 'demo') {
          const sub = script === 'demo' ? 'demo' : (passed.find((w) => /^[a-z]/.test(w)) ?? '');
          found.push({ where: `${file}:${line}`, text: segment.trim(), tool: 'orchard', name: sub, flags: flagsOf(passed) });
        } else {
          found.push({ where: `${file}:${line}`, text: segment.trim(), tool: 'npm', name: script, flags: flagsOf(passed) });
        }
      } else if (command) {
        const words = command[1]!.trim().split(/\s+/).filter(Boolean);
        const first = words[0] ?? '';
        if (/^[a-z][a-z-]*$/.test(first)) {
          found.push({ where: `${file}:${line}`, text: segment.trim(), tool: 'orchard', name: first, flags: flagsOf(words.slice(1)) });
        } else if (FLAG.test(first)) {
          found.push({ where: `${file}:${line}`, text: segment.trim(), tool: 'orchard', name: '', flags: flagsOf(words) });
        }
      }
    }
  }
  return found;
}

function flagsOf(words: readonly string[]): string[] {
  // `[--components N | --variance F]` and `--flag=value` name flags too; `--` alone ends the options.
  return words.map((w) => w.replace(/^[[(]+/, '')).flatMap((w) => (w !== '--' && FLAG.test(w) ? [FLAG.exec(w)![0]] : []));
}

/** Whether a --help text offers `flag` (as `-k, --components <n>`, `--help`, `[--quick]`…). */
export function helpOffers(help: string, flag: string): boolean {
  const escaped = flag.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&');
  return new RegExp(`(^|[\\s,\\[(|])${escaped}(?=[\\s,=<\\[\\])|]|$)`, 'm').test(help);
}

const orchardHelp = new Map<string, Promise<{ known: boolean; help: string }>>();
function helpOfOrchard(sub: string): Promise<{ known: boolean; help: string }> {
  let answer = orchardHelp.get(sub);
  if (!answer) {
    answer = orchard(...(sub ? [sub] : []), '--help').then((r) => ({ known: r.code === 0 || r.code === undefined, help: `${r.out}${r.err}` }));
    orchardHelp.set(sub, answer);
  }
  return answer;
}

const packageJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
const scriptHelp = new Map<string, string>();
function helpOfScript(script: string): string {
  if (!scriptHelp.has(script)) {
    const result = spawnSync('npm', ['run', '-s', script, '--', '--help'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    scriptHelp.set(script, `${result.stdout}${result.stderr}`);
  }
  return scriptHelp.get(script)!;
}

/** What is wrong with a shown command, if anything. */
async function problemsOf(command: DocCommand): Promise<string[]> {
  if (command.tool === 'npm') {
    const body = packageJson.scripts[command.name];
    if (body === undefined) return [`npm script "${command.name}" does not exist`];
    if (command.flags.length === 0) return [];
    // A script that runs orchard is asked in this process.
    const viaOrchard = /^node runtime\/orchard\.cjs(?:\s+(\S+))?$/.exec(body);
    const help = viaOrchard ? (await helpOfOrchard(viaOrchard[1] ?? '')).help : helpOfScript(command.name);
    return command.flags.filter((flag) => !helpOffers(help, flag)).map((flag) => `${flag} is not in \`npm run ${command.name} -- --help\``);
  }
  const { known, help } = await helpOfOrchard(command.name);
  if (!known || (command.name && !help.includes(`orchard ${command.name}`))) return [`orchard has no command "${command.name}"`];
  return command.flags.filter((flag) => !helpOffers(help, flag)).map((flag) => `${flag} is not in \`orchard ${command.name} --help\``);
}

describe('commandsIn', () => {
  const sample = [
    'Run `npx orchard run -i ./a -o ./b --varience 0.9` or `orchard plan | extract | fit`.',
    '```mermaid',
    'A["orchard bundle --nothing"]',
    '```',
    '```',
    'npm run trigger -- [--input s3://…] [--components N | --variance F]   # a comment --not-a-flag',
    'npm run bench:labels -- /tmp/run && orchard --help',
    '```',
  ].join('\n');
  const commands = commandsIn(sample, 'X.md');

  it('finds orchard and npm run commands in inline code and code blocks, not in diagrams, with their flags', () => {
    expect(commands.map((c) => [c.where, c.tool, c.name, c.flags])).toEqual([
      ['X.md:1', 'orchard', 'run', ['-i', '-o', '--varience']],
      ['X.md:1', 'orchard', 'plan', []],
      ['X.md:6', 'npm', 'trigger', ['--input', '--components', '--variance']],
      ['X.md:7', 'npm', 'bench:labels', []],
      ['X.md:7', 'orchard', '', ['--help']],
    ]);
  });

  it('reports a flag that --help does not offer, and a command that does not exist', async () => {
    expect(await problemsOf(commands[0]!)).toEqual(['--varience is not in `orchard run --help`']);
    expect(await problemsOf({ where: 'X.md:9', text: 'orchard frobnicate', tool: 'orchard', name: 'frobnicate', flags: [] })).toEqual(['orchard has no command "frobnicate"']);
    expect(await problemsOf({ where: 'X.md:9', text: 'npm run nope', tool: 'npm', name: 'nope', flags: [] })).toEqual(['npm script "nope" does not exist']);
  });
});

describe('the commands README.md and docs/ show', () => {
  const files = ['README.md', ...(fs.existsSync(path.join(ROOT, 'docs')) ? fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`) : [])];
  const commands = files.flatMap((file) => commandsIn(fs.readFileSync(path.join(ROOT, file), 'utf8'), file));

  it('finds the commands (the check would pass vacuously on none)', () => {
    expect(commands.filter((c) => c.tool === 'orchard' && c.name === 'run').length).toBeGreaterThan(3);
    expect(commands.some((c) => c.tool === 'npm')).toBe(true);
  });

  it('shows only commands that exist, with flags their --help answers', async () => {
    const problems: string[] = [];
    for (const command of commands) for (const problem of await problemsOf(command)) problems.push(`${command.where}: ${command.text} — ${problem}`);
    expect(problems).toEqual([]);
  }, 300_000);
});
