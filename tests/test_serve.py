#!/usr/bin/env python3
"""
test_serve.py: `evstore serve` end to end (issue #7).

Starts the server on an ephemeral loopback port and drives every route
with curl, as a client in another language would: appends (one event, an
array, idempotent retries, conflicts, bad input, a schema violation, too
large), reads (streams, $all, listings, info, paging, filters), commands
of the orders decider, projections and their queries, /metrics (checked
by promtool), the live event stream (history then live, resumed with
Last-Event-ID while another client appends, heartbeats, the subscriber
limit), a headless Chromium page following the stream with EventSource,
bearer tokens and roles, limits (body, headers, connections, slow
clients), malformed requests, and a graceful stop on SIGTERM.  After
every refused request the log's bytes are compared: nothing changed.

usage: test_serve.py EVSTORE SOURCE_ROOT
"""
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

EVSTORE = sys.argv[1]
SRC = sys.argv[2]
SCHEMAS = os.path.join(SRC, 'schema', 'events')
PROJECTIONS = os.path.join(SRC, 'projections')
TMP = tempfile.mkdtemp(prefix='evs-serve-')

passed = 0
failures = []


def ok(name, cond, detail=''):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(name)
        print('FAIL: %s %s' % (name, detail), flush=True)


def eq(name, want, got):
    ok(name, want == got, '\n    expected: %r\n    actual:   %r' % (want, got))


class Server:
    def __init__(self, name, *args, expect_start=True):
        self.dir = os.path.join(TMP, name)
        extra = [] if '--no-projections' in args else ['--projections', PROJECTIONS]
        self.proc = subprocess.Popen(
            [EVSTORE, 'serve', self.dir, '--port', '0', '--schemas', SCHEMAS] + extra +
            list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.hello = None
        if not expect_start:
            return
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)
        if not ready:
            raise RuntimeError('the server did not start')
        line = self.proc.stdout.readline()
        self.hello = json.loads(line)
        self.url = self.hello['listening']
        self.port = int(self.url.rsplit(':', 1)[1])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        err = self.proc.stderr.read().decode()
        return rc, err


def curl(method, url, body=None, headers=(), timeout=20):
    """(status, parsed JSON or None, raw body bytes, response headers)."""
    out = os.path.join(TMP, 'curl.out')
    hdr = os.path.join(TMP, 'curl.hdr')
    cmd = ['curl', '-sS', '--max-time', str(timeout), '-X', method, '-o', out,
           '-D', hdr, '-w', '%{http_code}', '-H', 'Expect:']
    for h in headers:
        cmd += ['-H', h]
    if body is not None:
        cmd += ['--data-binary', '@-']
        if not any(h.lower().startswith('content-type:') for h in headers):
            cmd += ['-H', 'Content-Type: application/json']
    if isinstance(body, str):
        body = body.encode()
    r = subprocess.run(cmd + [url], input=body, capture_output=True)
    status = int(r.stdout.decode() or 0)
    raw = open(out, 'rb').read() if os.path.exists(out) else b''
    heads = open(hdr, 'rb').read().decode('latin-1') if os.path.exists(hdr) else ''
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed, raw, heads


def log_digest(store_dir):
    """A digest of every file of the store's log."""
    h = hashlib.sha256()
    logdir = os.path.join(store_dir, 'log')
    for name in sorted(os.listdir(logdir)):
        h.update(name.encode())
        with open(os.path.join(logdir, name), 'rb') as f:
            h.update(f.read())
    return h.hexdigest()


def refused(name, srv, method, path, body=None, headers=(), status=400, error='inval',
            message=None):
    """A request that must be refused with `status` and change nothing."""
    before = log_digest(srv.dir)
    st, j, raw, _ = curl(method, srv.url + path, body, headers)
    eq(name + ': status', status, st)
    eq(name + ': error', error, j.get('error') if isinstance(j, dict) else raw)
    if message is not None:
        ok(name + ': message', isinstance(j, dict) and message in j.get('message', ''),
           '\n    wanted %r in %r' % (message, j))
    eq(name + ': log unchanged', before, log_digest(srv.dir))
    return j


def ev(type_, data, **kw):
    e = {'type': type_, 'data': data}
    e.update(kw)
    return json.dumps(e)


def strip(events):
    """Events without what varies between runs."""
    return [{k: v for k, v in e.items() if k not in ('id', 'timestamp')} for e in events]


# ---------------------------------------------------------------------
# one server with schemas and the five projections

S = Server('main', '--max-body', '65536', '--heartbeat', '1', '--max-subscribers', '3',
           '--timeout', '3', '--max-connections', '12')
eq('hello: auth', False, S.hello['auth'])
eq('hello: projections', ['customers', 'daily_revenue', 'event_types', 'orders', 'streams'],
   S.hello['projections'])
ok('hello: loopback', S.url.startswith('http://127.0.0.1:'))

st, j, _, _ = curl('GET', S.url + '/health')
eq('health', (200, {'status': 'ok'}), (st, j))
st, j, _, _ = curl('GET', S.url + '/ready')
eq('ready', (200, {'ready': True}), (st, j))
st, _, raw, heads = curl('GET', S.url + '/')
ok('page', st == 200 and b'new EventSource' in raw and 'text/html' in heads)

# --- appends
st, j, _, heads = curl('POST', S.url + '/streams/cart-1', ev('Added', {'sku': 'a'}))
eq('append one', (201, {'stream': 'cart-1', 'first_version': 1, 'last_version': 1,
                        'first_position': 1, 'last_position': 1, 'idempotent': False}),
   (st, j))
ok('append one: JSON', 'application/json' in heads)
ids = ['0193a000-0000-7000-8000-00000000000%d' % i for i in range(1, 4)]
batch = '[' + ','.join(ev('Added', {'sku': s}, id=i, metadata={'by': 'test'})
                       for s, i in zip('bcd', ids)) + ']'
st, j, _, _ = curl('POST', S.url + '/streams/cart-1', batch, ['Expected-Version: 1'])
eq('append array', (201, {'stream': 'cart-1', 'first_version': 2, 'last_version': 4,
                          'first_position': 2, 'last_position': 4, 'idempotent': False}),
   (st, j))
before = log_digest(S.dir)
st, j, _, _ = curl('POST', S.url + '/streams/cart-1', batch, ['Expected-Version: 1'])
eq('append retried: idempotent', (200, {'stream': 'cart-1', 'first_version': 2,
                                        'last_version': 4, 'first_position': 2,
                                        'last_position': 4, 'idempotent': True}), (st, j))
eq('append retried: log unchanged', before, log_digest(S.dir))
st, j, _, _ = curl('POST', S.url + '/streams/cart-2', ev('Added', {}),
                   ['Expected-Version: no_stream'])
eq('append no_stream', (201, 5), (st, j['first_position']))
st, j, _, _ = curl('POST', S.url + '/streams/cart-2', ev('Removed', {}),
                   ['Expected-Version: exists'])
eq('append exists', (201, 2), (st, j['last_version']))
st, j, _, _ = curl('POST', S.url + '/streams/a%2Fb%20c', ev('Odd', {'n': 1}))
eq('append to a name with / and space', (201, 'a/b c'), (st, j['stream']))
HEAD = 7

j = refused('conflict', S, 'POST', '/streams/cart-1', ev('Added', {}),
            ['Expected-Version: 2'], 409, 'conflict', "expected version 2")
eq('conflict: current version and code', (4, -1, 'cart-1'),
   (j.get('current_version'), j.get('code'), j.get('stream')))
refused('conflict no_stream', S, 'POST', '/streams/cart-1', ev('A', {}),
        ['Expected-Version: no_stream'], 409, 'conflict')
refused('conflict exists', S, 'POST', '/streams/cart-9', ev('A', {}),
        ['Expected-Version: exists'], 409, 'conflict')
refused('bad expected version', S, 'POST', '/streams/cart-1', ev('A', {}),
        ['Expected-Version: soon'], 400, 'inval', 'Expected-Version')
refused('absurd expected version', S, 'POST', '/streams/cart-1', ev('A', {}),
        ['Expected-Version: 99999999999999999999999'], 400, 'inval', 'Expected-Version')
refused('negative expected version', S, 'POST', '/streams/cart-1', ev('A', {}),
        ['Expected-Version: -5'], 400, 'inval')
refused('bad JSON', S, 'POST', '/streams/cart-1', '{"type": "A", "data": {', status=400,
        error='inval', message='invalid JSON')
refused('body not UTF-8', S, 'POST', '/streams/cart-1',
        b'{"type": "A", "data": {"x": "\xff\xfe"}}', message='invalid JSON')
refused('empty body', S, 'POST', '/streams/cart-1', '', message='empty')
refused('empty array', S, 'POST', '/streams/cart-1', '[]', message='empty array')
refused('not an object', S, 'POST', '/streams/cart-1', '"hello"', message='event object')
refused('data not an object', S, 'POST', '/streams/cart-1', '{"type":"A","data":[1]}',
        message='"data" is not a JSON object')
refused('unknown key', S, 'POST', '/streams/cart-1', '{"type":"A","data":{},"x":1}',
        message='unknown key "x"')
refused('bad type', S, 'POST', '/streams/cart-1', '{"type":"A B","data":{}}',
        message='bad "type"')
refused('bad id', S, 'POST', '/streams/cart-1', '{"type":"A","data":{},"id":"nope"}',
        message='not a UUID')
refused('duplicate keys', S, 'POST', '/streams/cart-1', '{"type":"A","type":"B","data":{}}',
        message='duplicate')
refused('bad event in an array', S, 'POST', '/streams/cart-1',
        '[{"type":"A","data":{}},{"type":"B"}]', message='event 2 of 2: missing "data"')
refused('deep JSON', S, 'POST', '/streams/cart-1',
        '{"type":"A","data":' + '{"a":' * 3000 + '1' + '}' * 3000 + '}',
        message='deeper than 512 levels')
refused('deep JSON in a string is fine, a bad event is not', S, 'POST', '/streams/cart-1',
        '{"type":"A","data":{"s":"' + '[' * 3000 + '"},"x":1}', message='unknown key')
refused('deep JSON, a command', S, 'POST', '/commands/orders/order-5',
        '[' * 60000, message='deeper than 512 levels')
refused('schema violation', S, 'POST', '/streams/order-1',
        ev('OrderPlaced', {'order_id': 1}, schema_version=2), status=422, error='schema')
refused('stream name with a control character', S, 'POST', '/streams/a%01b', ev('A', {}),
        message='stream')
refused('stream name too long', S, 'POST', '/streams/' + 'x' * 300, ev('A', {}),
        message='stream')
refused('stream name not UTF-8', S, 'POST', '/streams/a%ffb', ev('A', {}),
        message='UTF-8')
refused('stream name with NUL', S, 'POST', '/streams/a%00b', ev('A', {}), message='NUL')
refused('body too large', S, 'POST', '/streams/cart-1',
        ev('A', {'pad': 'x' * 70000}), status=413, error='toolarge', message='--max-body')
refused('body too large, chunked', S, 'POST', '/streams/cart-1',
        ev('A', {'pad': 'x' * 70000}), ['Transfer-Encoding: chunked'], 413, 'toolarge')
refused('query parameter on append', S, 'POST', '/streams/cart-1?x=1', ev('A', {}),
        message='unknown query parameter')
refused('a form body', S, 'POST', '/streams/cart-1', ev('A', {}),
        ['Content-Type: application/x-www-form-urlencoded'], 415, 'media',
        "not 'application/x-www-form-urlencoded'")
refused('a text body', S, 'POST', '/commands/orders/order-1', '{"type":"Ship"}',
        ['Content-Type: text/plain'], 415, 'media')
refused('a page of another name (DNS rebinding)', S, 'GET', '/all',
        headers=['Host: evil.example:%d' % S.port], status=403, error='forbidden',
        message="Host 'evil.example")
st, _, _, _ = curl('GET', S.url + '/health', headers=['Host: localhost:%d' % S.port])
eq('Host localhost is fine', 200, st)


# --- reads
st, j, _, _ = curl('GET', S.url + '/streams/cart-1')
eq('read: status', 200, st)
eq('read: events', [
    {'position': 1, 'stream': 'cart-1', 'version': 1, 'type': 'Added', 'schema_version': 1,
     'data': {'sku': 'a'}},
    {'position': 2, 'stream': 'cart-1', 'version': 2, 'type': 'Added', 'schema_version': 1,
     'metadata': {'by': 'test'}, 'data': {'sku': 'b'}},
    {'position': 3, 'stream': 'cart-1', 'version': 3, 'type': 'Added', 'schema_version': 1,
     'metadata': {'by': 'test'}, 'data': {'sku': 'c'}},
    {'position': 4, 'stream': 'cart-1', 'version': 4, 'type': 'Added', 'schema_version': 1,
     'metadata': {'by': 'test'}, 'data': {'sku': 'd'}}], strip(j['events']))
eq('read: ids as given', ids, [e['id'] for e in j['events'][1:]])
eq('read: next', (5, 'forward'), (j['next'], j['direction']))
st, j, _, _ = curl('GET', S.url + '/streams/cart-1?from=2&limit=2')
eq('read: from and limit', ([2, 3], 4), ([e['version'] for e in j['events']], j['next']))
st, j, _, _ = curl('GET', S.url + '/streams/cart-1?direction=backward&limit=3')
eq('read backward', ([4, 3, 2], 1), ([e['version'] for e in j['events']], j['next']))
st, j, _, _ = curl('GET', S.url + '/streams/cart-1?direction=backward&from=1')
eq('read backward to the start', ([1], None), ([e['version'] for e in j['events']],
                                               j['next']))
st, j, _, _ = curl('GET', S.url + '/streams/a%2Fb%20c')
eq('read a name with / and space', (200, ['a/b c']), (st, [e['stream'] for e in j['events']]))
st, j, _, _ = curl('GET', S.url + '/streams/cart-404')
eq('read missing stream', (404, 'notfound', 'cart-404'), (st, j['error'], j['stream']))
for q, why in [('from=-1', 'from'), ('from=99999999999999999999', 'from'), ('limit=0', 'limit'),
               ('limit=1001', 'limit'), ('limit=ten', 'limit'), ('direction=up', 'direction'),
               ('color=red', 'unknown query parameter'), ('from=%zz', 'percent-encoded'),
               ('from=1&' + '&'.join('k%d=1' % i for i in range(70)), 'more than')]:
    refused('read ?' + q[:30], S, 'GET', '/streams/cart-1?' + q, message=why)

st, j, _, _ = curl('GET', S.url + '/all')
eq('all', (200, list(range(1, HEAD + 1)), HEAD + 1),
   (st, [e['position'] for e in j['events']], j['next']))
st, j, _, _ = curl('GET', S.url + '/all?from=3&limit=2')
eq('all: page', ([3, 4], 5), ([e['position'] for e in j['events']], j['next']))
st, j, _, _ = curl('GET', S.url + '/all?category=cart&type=Removed')
eq('all: filters', ([6], HEAD + 1), ([e['position'] for e in j['events']], j['next']))
st, j, _, _ = curl('GET', S.url + '/all?type=Removed&type=Odd')
eq('all: two types', [6, 7], [e['position'] for e in j['events']])
st, j, _, _ = curl('GET', S.url + '/all?from=100')
eq('all: past the head', (200, [], 100), (st, j['events'], j['next']))

st, j, _, _ = curl('GET', S.url + '/streams')
eq('streams', (200, [{'stream': 'a/b c', 'last_version': 1},
                     {'stream': 'cart-1', 'last_version': 4},
                     {'stream': 'cart-2', 'last_version': 2}], None),
   (st, j['streams'], j['next']))
st, j, _, _ = curl('GET', S.url + '/streams?limit=1&after=a%2Fb%20c')
eq('streams: page', ([{'stream': 'cart-1', 'last_version': 4}], 'cart-1'),
   (j['streams'], j['next']))
st, j, _, _ = curl('GET', S.url + '/streams?limit=3')
eq('streams: a page that ends the list has no next', (3, None), (len(j['streams']), j['next']))
st, j, _, _ = curl('GET', S.url + '/streams/cart-1/info')
eq('info', (200, {'stream': 'cart-1', 'last_version': 4, 'event_count': 4,
                  'first_position': 1, 'last_position': 4}),
   (st, {k: v for k, v in j.items() if k != 'created'}))
ok('info: created', re.match(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$', j['created']))
refused('info of a missing stream', S, 'GET', '/streams/cart-404/info', status=404,
        error='notfound', message="stream 'cart-404' does not exist")

# --- routes and methods
refused('unknown route', S, 'GET', '/nope', status=404, error='notfound',
        message='no route GET /nope')
refused('too deep a route', S, 'GET', '/streams/a/b/c/d/e/f/g', status=404, error='notfound')
j = refused('wrong method', S, 'DELETE', '/streams/cart-1', status=405, error='method')
_, _, _, heads = curl('PUT', S.url + '/all')
ok('405 names the methods', re.search(r'(?im)^Allow: GET, HEAD\r?$', heads), heads)
refused('GET a command', S, 'GET', '/commands/orders/order-1', status=405, error='method')

# --- commands
place = {'type': 'PlaceOrder', 'order_id': '1', 'customer_id': 'c-9'}
st, j, _, _ = curl('POST', S.url + '/commands/orders/order-1', json.dumps(place),
                   ['Command-Id: place-1'])
eq('command: status', 201, st)
eq('command: result', {'stream': 'order-1', 'decider': 'orders', 'stream_version': 1,
                       'idempotent': False, 'attempts': 1},
   {k: v for k, v in j.items() if k != 'events'})
eq('command: events', [('OrderPlaced', 2, HEAD + 1, 'place-1', {'order_id': '1',
                                                               'customer_id': 'c-9',
                                                               'currency': 'EUR'})],
   [(e['type'], e['schema_version'], e['position'], e['metadata']['command_id'],
     {k: v for k, v in e['data'].items() if k != 'placed_at'}) for e in j['events']])
HEAD += 1
before = log_digest(S.dir)
st, j2, _, _ = curl('POST', S.url + '/commands/orders/order-1', json.dumps(place),
                    ['Command-Id: place-1'])
eq('command retried: idempotent', (200, True, j['events']), (st, j2['idempotent'],
                                                             j2['events']))
eq('command retried: log unchanged', before, log_digest(S.dir))
j = refused('command rejected', S, 'POST', '/commands/orders/order-1',
            json.dumps({'type': 'Pay', 'amount': 100}), status=422, error='rejected')
eq('command rejected: reason', ('empty_order', -14, 1),
   (j.get('reason_code'), j.get('code'), j.get('stream_version')))
refused('command already placed', S, 'POST', '/commands/orders/order-1', json.dumps(place),
        status=422, error='rejected')
refused('command: unknown decider', S, 'POST', '/commands/carts/cart-1', '{}', status=404,
        error='notfound', message="no decider 'carts'")
refused('command: stream outside the category', S, 'POST', '/commands/orders/cart-1',
        json.dumps(place), status=400, error='inval')
refused('command: bad JSON', S, 'POST', '/commands/orders/order-2', '{"type":',
        message='invalid JSON')
refused('command: not an object', S, 'POST', '/commands/orders/order-2', '[1]',
        message='JSON object')
refused('command: empty', S, 'POST', '/commands/orders/order-2', '', message='empty')
refused('command: bad Command-Id', S, 'POST', '/commands/orders/order-2', json.dumps(place),
        ['Command-Id: ' + 'x' * 200], message='Command-Id')
refused('command: unknown command', S, 'POST', '/commands/orders/order-2',
        '{"type":"Refund"}', status=422, error='rejected')
for cmd in [{'type': 'AddItem', 'sku': 'TEA-101', 'qty': 2, 'price': 1500}]:
    st, j, _, _ = curl('POST', S.url + '/commands/orders/order-1', json.dumps(cmd))
    eq('command AddItem', (201, 2, ['ItemAdded']), (st, j['stream_version'],
                                                    [e['type'] for e in j['events']]))
    HEAD += 1

# --- projections and queries
st, j, _, _ = curl('GET', S.url + '/projections')
eq('projections: names', ['customers', 'daily_revenue', 'event_types', 'orders', 'streams'],
   [p['name'] for p in j['projections']])
ok('projections: running', all(p['running'] and p['failed'] is None
                               for p in j['projections']), j)
st, j, _, _ = curl('GET', S.url + '/projections/orders/queries/by_id?id=order-1&min_position=%d'
                   % HEAD)
eq('query by_id: status', 200, st)
eq('query by_id: position', HEAD, j['position'])
eq('query by_id: rows', [{'id': 'order-1', 'customer': 'c-9', 'currency': 'EUR',
                          'status': 'placed', 'item_count': 2, 'total': 3000, 'version': 2}],
   [{k: v for k, v in r.items() if k not in ('placed_at', 'updated_at')} for r in j['rows']])
st, j, _, _ = curl('GET', S.url + '/projections/orders/queries/recent?limit=5')
eq('query with an integer parameter', (200, ['order-1']), (st, [r['id'] for r in j['rows']]))
st, j, _, _ = curl('GET', S.url + '/projections/orders/queries/by_customer?customer=c%2D9')
eq('query with an encoded parameter', (200, ['order-1']), (st, [r['id'] for r in j['rows']]))
refused('query: unknown query', S, 'GET', '/projections/orders/queries/nope', status=404,
        error='notfound', message="no query 'nope'")
refused('query: unknown projection', S, 'GET', '/projections/nope/queries/by_id', status=404,
        error='notfound')
refused('query: bad name', S, 'GET', '/projections/..%2Fx/queries/by_id', message='names')
refused('query: parameter twice', S, 'GET', '/projections/orders/queries/by_id?id=1&id=2',
        message='twice')
refused('query: min_position not reached', S, 'GET',
        '/projections/orders/queries/by_id?id=1&min_position=1000000&timeout_ms=100',
        status=504, error='timeout')
refused('query: absurd timeout', S, 'GET',
        '/projections/orders/queries/by_id?timeout_ms=99999999', message='timeout_ms')

# --- metrics
st, _, raw, heads = curl('GET', S.url + '/metrics')
text = raw.decode()
ok('metrics: text format', st == 200 and 'text/plain; version=0.0.4' in heads)


def metric(name):
    m = re.search(r'(?m)^' + re.escape(name) + r' (\S+)$', text)
    return float(m.group(1)) if m else None


eq('metrics: appends ok', 7.0, metric('evstore_appends_total{outcome="ok"}'))
eq('metrics: idempotent', 1.0, metric('evstore_appends_total{outcome="idempotent"}'))
eq('metrics: conflicts', 3.0, metric('evstore_appends_total{outcome="conflict"}'))
eq('metrics: events', float(HEAD), metric('evstore_events_total{outcome="ok"}'))
eq('metrics: events of idempotent appends', 3.0,
   metric('evstore_events_total{outcome="idempotent"}'))
eq('metrics: events of conflicting appends', 3.0,
   metric('evstore_events_total{outcome="conflict"}'))
eq('metrics: groups', 7.0, metric('evstore_group_commit_appends_count'))
eq('metrics: syncs', 7.0, metric('evstore_fdatasync_seconds_count'))
eq('metrics: orders position', float(HEAD),
   metric('evstore_projection_position{projection="orders"}'))
eq('metrics: 409s', 3.0,
   metric('evstore_http_requests_total{route="POST /streams/{stream}",status="409"}'))
ok('metrics: query histogram', (metric('evstore_query_seconds_count') or 0) >= 3)
r = subprocess.run(['promtool', 'check', 'metrics'], input=raw, capture_output=True)
eq('metrics: promtool check metrics', (0, b''), (r.returncode, r.stdout + r.stderr))

# --- live subscription: history, live, resume with Last-Event-ID


def sse(url, headers=(), seconds=2.0):
    """Reads an event stream for `seconds`: ([(id, data)], comments)."""
    cmd = ['curl', '-sS', '-N', '--max-time', str(seconds)]
    for h in headers:
        cmd += ['-H', h]
    r = subprocess.run(cmd + [url], capture_output=True)
    events, comments = [], 0
    for frame in r.stdout.decode().split('\n\n'):
        lines = [l for l in frame.split('\n') if l]
        if lines and all(l.startswith(':') for l in lines):
            comments += 1
            continue
        fields = dict(l.split(': ', 1) for l in lines if not l.startswith(':'))
        if 'id' in fields:
            events.append((int(fields['id']), json.loads(fields['data'])))
    return events, comments


def appender(n, first):
    for i in range(n):
        curl('POST', S.url + '/streams/live-%d' % (first + i), ev('Tick', {'i': first + i}))
        time.sleep(0.05)


t = threading.Thread(target=appender, args=(10, 0))
t.start()
first, comments = sse(S.url + '/subscribe?from=1', seconds=1.5)
t.join()
got = [i for i, _ in first]
ok('subscribe: history then live, in order', got == list(range(1, len(got) + 1)) and
   len(got) > HEAD, got)
eq('subscribe: data is the event', first[0][1]['position'], first[0][0])
t = threading.Thread(target=appender, args=(10, 10))
t.start()
rest, _ = sse(S.url + '/subscribe?from=1', ['Last-Event-ID: %d' % got[-1]], seconds=2.5)
t.join()
every = got + [i for i, _ in rest]
eq('subscribe resumed: no gap, no duplicate', list(range(1, HEAD + 21)), every)
HEAD += 20
cart, _ = sse(S.url + '/subscribe?from=1&category=cart&type=Removed', seconds=1)
eq('subscribe: filters', [6], [i for i, _ in cart])
_, beats = sse(S.url + '/subscribe?from=999999', seconds=2.6)
ok('subscribe: heartbeats on an idle stream', beats >= 2, beats)
refused('subscribe: bad Last-Event-ID', S, 'GET', '/subscribe', headers=['Last-Event-ID: x'],
        message='Last-Event-ID')


def subscribers_become(n):
    """Waits (up to 15 s) for /metrics to count n open streams."""
    for _ in range(150):
        _, _, raw, _ = curl('GET', S.url + '/metrics')
        m = re.search(rb'(?m)^evstore_sse_subscribers (\d+)$', raw)
        if m and int(m.group(1)) == n:
            return True
        time.sleep(0.1)
    return False


# the subscriber limit (3): three open streams, a fourth refused (a
# stream whose client left ends at its next write, a heartbeat at most)
ok('subscribe: the earlier streams ended', subscribers_become(0))
holders = [subprocess.Popen(['curl', '-sS', '-N', '--max-time', '8',
                             S.url + '/subscribe?from=999999'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
           for _ in range(3)]
ok('subscribe: three streams open', subscribers_become(3))
refused('subscribe: over --max-subscribers', S, 'GET', '/subscribe', status=503,
        error='busy', message='--max-subscribers')
for h in holders:
    h.wait()
ok('subscribe: the three ended', subscribers_become(0))
st, _, _, _ = curl('GET', S.url + '/subscribe?from=999999', timeout=1)
eq('subscribe: a slot again once they closed', 200, st)

# --- a browser following the log with EventSource
chromium = shutil.which('chromium') or shutil.which('chromium-browser')
ok('chromium is installed', chromium is not None)
if chromium:
    until = HEAD + 3
    t = threading.Thread(target=lambda: (time.sleep(1.5), appender(3, 100)))
    t.start()
    r = subprocess.run([chromium, '--headless', '--no-sandbox', '--disable-gpu',
                        '--user-data-dir=' + os.path.join(TMP, 'chromium'),
                        '--virtual-time-budget=15000', '--dump-dom',
                        S.url + '/?from=1&until=%d' % until],
                       capture_output=True, timeout=120)
    t.join()
    dom = r.stdout.decode()
    seen = [int(p) for p in re.findall(r'<li data-position="(\d+)">', dom)]
    eq('browser: every event, in order, the live ones too', list(range(1, until + 1)), seen)
    ok('browser: the stream was closed by the page', '<p id="state">done</p>' in dom, dom[-300:])
    HEAD = until

# --- limits on the wire


def raw_request(data, wait=3.0):
    """Sends bytes on a new connection; what came back before it closed."""
    s = socket.create_connection(('127.0.0.1', S.port), timeout=wait)
    s.sendall(data)
    got = b''
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    return got


def status_of(resp):
    m = re.match(rb'HTTP/1\.[01] (\d{3})', resp)
    return int(m.group(1)) if m else None


before = log_digest(S.dir)
eq('request line without a version', 400, status_of(raw_request(b'GET /health\r\n\r\n')))
ok('garbage request line: closed, nothing served',
   status_of(raw_request(b'GARBAGE\r\n\r\n')) in (None, 400))
eq('unknown method', 405, status_of(raw_request(b'BREW /streams/x HTTP/1.1\r\nHost: localhost\r\n\r\n')))
eq('header too large', 431, status_of(raw_request(
    b'GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: ' + b'a' * 40000 + b'\r\n\r\n')))
eq('unsupported HTTP version', 505, status_of(raw_request(b'GET /health HTTP/3.0\r\n\r\n')))
eq('malformed requests: log unchanged', before, log_digest(S.dir))

# a client trickling its headers is dropped after --timeout (3 s)
s = socket.create_connection(('127.0.0.1', S.port), timeout=10)
s.sendall(b'GET /health HTTP/1.1\r\n')
start = time.time()
closed = None
try:
    while time.time() - start < 8:
        s.sendall(b'X-Slow: 1\r\n')
        time.sleep(0.3)
        r, _, _ = select.select([s], [], [], 0)
        if r and s.recv(1024) == b'':
            closed = time.time() - start
            break
except (BrokenPipeError, ConnectionResetError):
    closed = time.time() - start
s.close()
ok('slow client dropped after --timeout', closed is not None and 2 <= closed <= 6, closed)

# too many connections (12): the extra ones are closed at once, and the
# server serves again once they go
idle = [socket.create_connection(('127.0.0.1', S.port)) for _ in range(12)]
time.sleep(0.3)
extra = socket.create_connection(('127.0.0.1', S.port), timeout=3)
extra.sendall(b'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
try:
    got = extra.recv(1024)
except (ConnectionResetError, socket.timeout):
    got = b''
eq('connection over --max-connections: closed without an answer', b'', got)
extra.close()
for c in idle:
    c.close()
time.sleep(0.5)
st, _, _, _ = curl('GET', S.url + '/health')
eq('served again after the crowd left', 200, st)

# --- graceful stop: a stream open, SIGTERM; the store verifies clean
holder = subprocess.Popen(['curl', '-sS', '-N', '--max-time', '20',
                           S.url + '/subscribe?from=1'], stdout=subprocess.PIPE)
time.sleep(0.5)
t0 = time.time()
rc, err = S.stop()
holder.wait(10)
eq('SIGTERM: exit status', 0, rc)
ok('SIGTERM: stopped within 5 s', time.time() - t0 < 5, time.time() - t0)
ok('SIGTERM: says so', 'stopped' in err, err)
eq('SIGTERM: the open stream ended cleanly', 0, holder.returncode)
r = subprocess.run([EVSTORE, 'verify', '--quiet', S.dir], capture_output=True)
eq('after the stop: verify', (0, '{"ok":true,"problems":0,"store":"%s"}' % S.dir),
   (r.returncode, r.stdout.decode().strip()))
r = subprocess.run([EVSTORE, 'stats', S.dir], capture_output=True)
eq('after the stop: every event there', HEAD, json.loads(r.stdout)['head_position'])

# ---------------------------------------------------------------------
# an event stream over a damaged log ends with an error frame, not with
# heartbeats forever

dmg = os.path.join(TMP, 'damaged')
r = subprocess.run([EVSTORE, 'generate', dmg, '--events', '2000', '--durability', 'none'],
                   capture_output=True)
eq('damaged: generate', 0, r.returncode)
seg = os.path.join(dmg, 'log', sorted(os.listdir(os.path.join(dmg, 'log')))[0])
with open(seg, 'r+b') as f:
    f.seek(300000)
    b = f.read(1)
    f.seek(300000)
    f.write(bytes([b[0] ^ 0x40]))
D = Server('damaged', '--no-projections', '--heartbeat', '1')
r = subprocess.run(['curl', '-sS', '-N', '--max-time', '5', D.url + '/subscribe?from=1'],
                   capture_output=True)
frames = r.stdout.decode().split('\n\n')
ids = [int(m.group(1)) for f in frames for m in [re.match(r'id: (\d+)', f)] if m]
errors = [f for f in frames if f.startswith('event: error\n')]
ok('damaged: events before the damage, in order', ids == list(range(1, len(ids) + 1)) and
   0 < len(ids) < 2000, ids[-3:])
eq('damaged: one error frame, last', (1, True), (len(errors), frames[-2] == errors[0]
                                                 if errors else None))
if errors:
    j = json.loads(errors[0].split('data: ', 1)[1])
    eq('damaged: the error', ('corrupt', -7, len(ids) + 1), (j['error'], j['code'],
                                                             j['position']))
eq('damaged: the stream ended by itself', 0, r.returncode)
rc, err = D.stop()
eq('damaged: stop', 0, rc)
ok('damaged: said on stderr', 'an event stream ended at position' in err, err)

# ---------------------------------------------------------------------
# tokens and roles

auth = os.path.join(TMP, 'tokens')
with open(auth, 'w') as f:
    f.write('# tokens\nreader-token-0123456789 read\n\nwriter-token-0123456789 write\n'
            'admin-token-01234567890 admin\n')
A = Server('auth', '--auth', auth, '--no-projections')
eq('auth: hello', True, A.hello['auth'])
st, j, _, _ = curl('GET', A.url + '/all')
eq('auth: no token', (401, 'unauthorized', 'a bearer token is needed (Authorization: '
                                           'Bearer TOKEN)'), (st, j['error'], j['message']))
_, _, _, heads = curl('GET', A.url + '/all')
ok('auth: 401 says Bearer', re.search(r'(?im)^WWW-Authenticate: Bearer\r?$', heads), heads)
st, j, _, _ = curl('POST', A.url + '/streams/s-1?access_token=writer-token-0123456789',
                   ev('A', {}))
eq('auth: no token as a parameter on a POST', 401, st)
st, j, _, _ = curl('GET', A.url + '/all', headers=['Authorization: Bearer wrong-token-0123456789'])
eq('auth: wrong token', (401, 'the token is not valid'), (st, j['message']))
st, j, _, _ = curl('GET', A.url + '/all', headers=['Authorization: Basic abc'])
eq('auth: not a bearer token', 401, st)
st, j, _, _ = curl('GET', A.url + '/all', headers=['Authorization: Bearer reader-token-012345678'])
eq('auth: a prefix of a token', 401, st)
st, _, _, _ = curl('GET', A.url + '/all', headers=['Authorization: Bearer reader-token-0123456789'])
eq('auth: read token reads', 200, st)
st, _, _, _ = curl('GET', A.url + '/all?access_token=reader-token-0123456789')
eq('auth: token as a parameter (EventSource)', 200, st)
before = log_digest(A.dir) if os.path.isdir(os.path.join(A.dir, 'log')) else None
st, j, _, _ = curl('POST', A.url + '/streams/s-1', ev('A', {}),
                   ['Authorization: Bearer reader-token-0123456789'])
eq('auth: read token cannot append', (403, 'forbidden', 'POST /streams/{stream} needs the '
                                                       'write role; the token has read'),
   (st, j['error'], j['message']))
st, j, _, _ = curl('POST', A.url + '/commands/orders/order-1', '{"type":"PlaceOrder"}',
                   ['Authorization: Bearer reader-token-0123456789'])
eq('auth: read token cannot run commands', 403, st)
st, j, _, _ = curl('POST', A.url + '/streams/s-1', ev('A', {}))
eq('auth: append without a token', 401, st)
eq('auth: refused appends wrote nothing', before, log_digest(A.dir))
st, j, _, _ = curl('POST', A.url + '/streams/s-1', ev('A', {}),
                   ['Authorization: Bearer writer-token-0123456789'])
eq('auth: write token appends', (201, 1), (st, j['first_position']))
st, _, _, _ = curl('POST', A.url + '/streams/s-1', ev('A', {}),
                   ['Authorization: Bearer admin-token-01234567890'])
eq('auth: admin token appends', 201, st)
st, _, _, _ = curl('GET', A.url + '/health')
eq('auth: health needs no token', 200, st)
W = ['Authorization: Bearer writer-token-0123456789']
st, _, _, _ = curl('POST', A.url + '/streams/s-1', ev('A', {}),
                   W + ['Content-Type: application/json; charset=utf-8'])
eq('JSON with a charset is fine', 201, st)
before = log_digest(A.dir)
st, j, _, _ = curl('POST', A.url + '/streams/s-1', '[' + ','.join(['{}'] * 10001) + ']', W)
eq('too many events in one request', (413, 'toolarge', 'the body holds 10001 events; one '
                                                       'request appends at most 10000'),
   (st, j['error'], j['message']))
eq('too many events: log unchanged', before, log_digest(A.dir))
st, j, _, _ = curl('GET', A.url + '/all', headers=['Host: evil.example'] + W)
eq('with --auth any Host is served', 200, st)
# a page of big events stops at 4 MiB of data, and "next" goes on from there
pad = 'x' * 900000
for i in range(6):
    st, _, _, _ = curl('POST', A.url + '/streams/big-1', ev('Big', {'pad': pad}), W)
    eq('big event %d' % i, 201, st)
st, j, _, _ = curl('GET', A.url + '/streams/big-1?limit=10', headers=W)
eq('a page stops at 4 MiB', ([1, 2, 3, 4, 5], 6), ([e['version'] for e in j['events']],
                                                   j['next']))
st, j, _, _ = curl('GET', A.url + '/streams/big-1?from=6', headers=W)
eq('and goes on from next', [6], [e['version'] for e in j['events']])
st, j, _, _ = curl('GET', A.url + '/all?from=4&limit=100', headers=W)
eq('$all pages stop there too', ([4, 5, 6, 7, 8], 9), ([e['position'] for e in j['events']],
                                                      j['next']))
st, _, _, _ = curl('GET', A.url + '/metrics')
eq('auth: metrics need one', 401, st)
rc, err = A.stop()
eq('auth: stop', 0, rc)
ok('auth: no token in the log', 'token-0123456789' not in err, err)

# bad token files and listening beyond loopback without --auth
bad_files = [('short x\n', 'a token is 16 to 255 printable ASCII characters'),
             ('a-token-long-enough-1 root\n', 'the second field is not a role'),
             ('read a-token-long-enough-1\n', 'a token is 16 to 255'),
             ('a-token-long-enough-1\n', 'expected "TOKEN ROLE"'),
             ('a-token-long-enough-1 read\na-token-long-enough-1 write\n', 'given twice'),
             ('# nothing\n', 'holds no token')]
for i, (content, why) in enumerate(bad_files):
    path = os.path.join(TMP, 'bad-tokens-%d' % i)
    with open(path, 'w') as f:
        f.write(content)
    B = Server('bad-%d' % i, '--auth', path, expect_start=False)
    rc = B.proc.wait(20)
    err = B.proc.stderr.read().decode()
    eq('bad token file %d: exit status' % i, 1, rc)
    ok('bad token file %d: message' % i, why in err and path in err, err)
    ok('bad token file %d: no token printed' % i, 'a-token-long' not in err, err)
    ok('bad token file %d: no store made' % i, not os.path.exists(B.dir))
B = Server('open', '--listen', '0.0.0.0', expect_start=False)
eq('listening beyond loopback without --auth: usage error', 2, B.proc.wait(20))
ok('listening beyond loopback without --auth: message',
   'without --auth the server listens on loopback only' in B.proc.stderr.read().decode())

# ---------------------------------------------------------------------
# the README's walk-through, as written, on a free port and a fresh
# directory: each output line as shown, "..." matching anything

readme = open(os.path.join(SRC, 'README.md')).read()
block = readme.split('<!-- walkthrough -->\n```sh\n', 1)[1].split('```', 1)[0]
probe = socket.socket()
probe.bind(('127.0.0.1', 0))
port = probe.getsockname()[1]
probe.close()
shop = os.path.join(TMP, 'shop-store')
script = block.replace('2113', str(port)).replace('shop-store', shop) \
              .replace('build/tools/evstore', EVSTORE)
expected = [l[3:] if l.startswith('#> ') else '' for l in script.split('\n')
            if l.startswith('#>')]
r = subprocess.run(['bash', '-c', script], capture_output=True, timeout=120)
got = r.stdout.decode().split('\n')
if got and got[-1] == '':
    got.pop()
eq('walk-through: exit status', 0, r.returncode)
eq('walk-through: as many lines as shown', len(expected), len(got))
for n, (want, line) in enumerate(zip(expected, got)):
    pattern = '^' + '.*'.join(re.escape(p) for p in want.split('...')) + '$'
    ok('walk-through line %d' % (n + 1), re.match(pattern, line, re.S) is not None,
       '\n    wanted: %s\n    got:    %s' % (want, line))

shutil.rmtree(TMP)
print('%d passed, %d failed' % (passed, len(failures)))
sys.exit(1 if failures else 0)
