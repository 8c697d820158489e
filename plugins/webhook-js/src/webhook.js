// Pier's webhook deployment method, in JavaScript, built into a component by
// componentize-js against the `pier:deploy/plugin` world of `pier:deploy@0.2.0`
// (../../wit/0.2.0).
//
// A deploy POSTs one JSON document describing the build to the URL the user gave. The URL
// is an endpoint whose source is the `url` setting, so the host grants exactly its origin
// and hands the resolved URL back in `ctx.endpoints`. The optional `token` secret is sent
// as `Authorization: Bearer <token>` by the host: the plugin names it by handle and never
// sees its value; `permissions.secrets` binds it to exactly that header of `hook`, so the
// host refuses any other use.
//
// How WIT maps to JavaScript here (componentize-js, jco's conventions):
// - records are objects with camelCase keys (`deployId`, `buildId`, `timeoutMs`);
// - variants are `{ tag: 'kebab-case', val }`; enums are kebab-case strings;
// - `option<T>` is the value or `undefined`; `list<u8>` is a `Uint8Array`;
// - an export returning `result<T, E>` returns T, and throws E (the plain value, or an
//   `Error` whose own `payload` property is E; an `Error` without `payload` traps);
// - an import returning `result<T, E>` returns T, or throws an error whose `payload` is E.

import { log, step } from 'pier:deploy/events@0.2.0';
import { handles } from 'pier:deploy/secrets@0.2.0';
import { send } from 'pier:deploy/http@0.2.0';

const VERSION = '0.1.0';

/** Field ids, and the endpoint id. */
const URL_FIELD = 'url';
const TOKEN_FIELD = 'token';
const HOOK = 'hook';
/** The exact text before the token in the `Authorization` header (bound in `describe`). */
const BEARER = 'Bearer ';

/** How long the webhook may take to answer. */
const TIMEOUT_MS = 30_000;
/** How much of a failed response's body goes into the failure's tail. */
const TAIL_LINES = 20;
const TAIL_LINE_CHARS = 300;

/** A `method-error`, thrown from an export: the bindings return `payload` as the error. */
class MethodError extends Error {
  constructor(tag, val) {
    super(`${tag}: ${typeof val === 'string' ? val : JSON.stringify(val)}`);
    this.payload = val === undefined ? { tag } : { tag, val };
  }
}

const invalidAnswer = (field, message) => new MethodError('invalid-answer', { field, message });

/** The answer to `field`, trimmed, or undefined when absent or blank. */
function answer(answers, field) {
  const found = answers.find((a) => a.field === field);
  const value = found?.value.trim();
  return value ? value : undefined;
}

/** The URL in `text` if it is an absolute http(s) URL, else throws `invalid-answer`. */
function checkUrl(text) {
  if (text === undefined) {
    throw invalidAnswer(URL_FIELD, 'the webhook URL is missing: give the http:// or https:// URL to POST to');
  }
  let url;
  try {
    url = new URL(text);
  } catch {
    throw invalidAnswer(URL_FIELD, `\`${text}\` is not a URL: give the http:// or https:// URL to POST to`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw invalidAnswer(URL_FIELD, `\`${text}\` uses ${url.protocol.replace(/:$/, '')}: the webhook URL must start with https:// or http://`);
  }
  if (!url.hostname) {
    throw invalidAnswer(URL_FIELD, `\`${text}\` has no host`);
  }
  if (url.username || url.password) {
    throw invalidAnswer(URL_FIELD, 'the webhook URL must not hold credentials: pass a bearer token as the `token` secret instead');
  }
  return url;
}

/** The resolved URL of the `hook` endpoint. */
function hookUrl(ctx) {
  const endpoint = ctx.endpoints.find((e) => e.id === HOOK);
  if (!endpoint) {
    const server = ctx.server || 'SERVER';
    throw invalidAnswer(URL_FIELD, `this server has no webhook URL: set one with \`pier server edit ${server} --set url=URL\``);
  }
  return checkUrl(endpoint.url);
}

/** One line describing an `http-error`. */
function describeHttpError(error) {
  switch (error?.tag) {
    case 'denied': return `request denied by the host: ${error.val}`;
    case 'invalid-request': return `invalid request: ${error.val}`;
    case 'timeout': return 'request timed out';
    case 'connection': return `could not connect: ${error.val}`;
    case 'too-large': return `response larger than ${error.val} bytes`;
    default: return `unexpected error: ${String(error?.message ?? error)}`;
  }
}

/** The first lines of a response body, for a failure's tail. */
function bodyTail(body) {
  const text = new TextDecoder().decode(body);
  return text
    .split(/\r?\n/)
    .map((line) => line.trimEnd())
    .filter((line) => line.length > 0)
    .slice(0, TAIL_LINES)
    .map((line) => (line.length > TAIL_LINE_CHARS ? `${line.slice(0, TAIL_LINE_CHARS)}…` : line));
}

export const method = {
  describe() {
    return {
      name: 'webhook',
      title: 'Webhook',
      version: VERSION,
      summary:
        'Notifies a webhook of every deploy: POSTs a JSON document naming the server, deploy, ' +
        'commit, branch, build and trigger to one URL, optionally with a bearer token, and fails ' +
        'the deploy unless the webhook answers 2xx.',
      fields: [
        {
          id: URL_FIELD,
          label: 'Webhook URL',
          help: 'The http:// or https:// URL that receives a POST for every deploy. Only its origin is reachable by this method.',
          kind: 'text',
          required: true,
          default: undefined,
          advanced: false,
          example: 'https://hooks.example.com/deploys',
        },
        {
          id: TOKEN_FIELD,
          label: 'Bearer token',
          help: 'Sent as `Authorization: Bearer <token>` when set. In CI pass it as --secret token=env:WEBHOOK_TOKEN.',
          kind: 'secret',
          required: false,
          default: undefined,
          advanced: false,
          example: undefined,
        },
      ],
      permissions: {
        endpoints: [{ id: HOOK, sources: [{ tag: 'field', val: URL_FIELD }] }],
        origins: [],
        programs: [],
        // The token goes only to the webhook, as `Authorization: Bearer <token>`.
        secrets: [
          {
            secret: TOKEN_FIELD,
            use: { tag: 'header', val: { endpoint: HOOK, name: 'Authorization', prefix: BEARER } },
          },
        ],
        // Deploy commands get nothing from this method.
        commands: { env: [], rules: [], tools: [] },
      },
    };
  },

  choices(_ctx, field, _answers) {
    throw new MethodError('unsupported', `\`${field}\` is not a choice field: the webhook method has none`);
  },

  validate(ctx, answers) {
    const url = checkUrl(answer(answers, URL_FIELD));
    const withToken = handles().includes(TOKEN_FIELD) ? ', with a bearer token' : ', without a token';
    return `will POST a JSON notice of every deploy to ${url.origin}${withToken}`;
  },

  setup(ctx, answers) {
    const url = answer(answers, URL_FIELD);
    checkUrl(url);
    return { settings: [{ field: URL_FIELD, value: url }], notes: [] };
  },

  deploy(ctx, settings, build) {
    const url = hookUrl(ctx);
    const notice = {
      server: ctx.server,
      deploy_id: build.deployId,
      commit: build.commit,
      branch: build.branch,
      build_id: build.buildId ?? null,
      trigger: build.trigger,
    };
    const headers = [{ name: 'content-type', value: { tag: 'text', val: 'application/json' } }];
    if (handles().includes(TOKEN_FIELD)) {
      headers.push({
        name: 'authorization',
        value: { tag: 'secret', val: { handle: TOKEN_FIELD, prefix: BEARER, suffix: '' } },
      });
    }

    step(`Notifying ${url.origin}`);
    let response;
    try {
      response = send({
        method: 'post',
        url: url.href,
        headers,
        body: new TextEncoder().encode(JSON.stringify(notice)),
        timeoutMs: TIMEOUT_MS,
      });
    } catch (e) {
      const error = e !== null && typeof e === 'object' && Object.hasOwn(e, 'payload') ? e.payload : e;
      throw new MethodError('provider', `could not notify ${url.origin}: ${describeHttpError(error)}`);
    }

    const status = response.status;
    if (status >= 200 && status < 300) {
      log('info', `webhook answered HTTP ${status}`);
      return { summary: `notified ${url.origin} (HTTP ${status})`, url: undefined };
    }
    const tail = bodyTail(response.body);
    log('error', `webhook answered HTTP ${status}`);
    throw new MethodError('deploy-failed', { reason: `webhook answered HTTP ${status}`, tail });
  },
};
