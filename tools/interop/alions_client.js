'use strict';
// ali-ons (npm, pure-JS RocketMQ remoting client) driven by tests/interop: one process = one
// producer or one push consumer. Usage: node alions_client.js '<json config>'.
// Prints one JSON object a line on stdout ("event": ready | queues | sent | message | error |
// closeRace | closed). A consumer runs until its stdin closes (then closes the consumer cleanly)
// or until deadlineMs passes (exit 3). Needs NODE_PATH=<dir with ali-ons installed>/node_modules.
// Producer messages may carry "delayTimeLevel"; "sent" reports sentAt (Date.now() once the send
// returned). A consumer may take "maxReconsumeTimes" (ali-ons option, sent with each
// CONSUMER_SEND_MSG_BACK) and "retry": {bodies?: [...] (default every message), times?: n
// (default forever)}: the handler fails those messages, n times each, by answering
// Consumer.ACTION_RETRY ("action": "retry"). ali-ons 3.12.0 drops that answer for a message
// redelivered from %RETRY%<group> (its wrapper handler there does not return the user handler's
// value), so such a message is failed by throwing instead ("action": "throw"); ali-ons reports the
// throw as an 'error', printed as "thrown" rather than "error". Every delivery is reported
// ("message", with at = Date.now(), reconsumeTimes and the action).
// With "accessKey" and "secretKey" (ali-ons' `accessKeyId` / `accessKeySecret`), every request is
// signed for a broker with aclEnable=true (lib/channel.js); without them nothing is signed.
// ali-ons retries a send the broker answers with SYSTEM_ERROR (as ACL refusals are) and then
// throws "Send [n] times, still failed" without the broker's remark, so the producer reports each
// failed attempt first ("sendFailed", with the response code and remark).

const { Producer, Consumer, Message } = require('ali-ons');

const cfg = JSON.parse(process.argv[2]);
const quiet = { info() {}, warn() {}, debug() {}, error() {} };
// Short timers so a test sees heartbeats, routes and rebalances within a second.
const timers = {
  pollNameServerInteval: 1000,
  heartbeatBrokerInterval: 1000,
  rebalanceInterval: 500,
  persistConsumerOffsetInterval: 500,
};

// ali-ons signs only when both are non-empty; absent keys leave the options as they were.
const credentials = cfg.accessKey === undefined ? {} : {
  accessKeyId: cfg.accessKey,
  accessKeySecret: cfg.secretKey,
};

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

const ON_PURPOSE = 'interop: failing this message on purpose';

// ali-ons' close() clears its queue table while its rebalance timer still runs, so a rebalance
// can send QUERY_CONSUMER_OFFSET for queues it now thinks are new; when the client then closes
// its sockets, that request fails with SocketCloseError, reported as an 'error'. An error of that
// name raised after the client began closing its own sockets is reported as "closeRace": the
// client's shutdown, not the broker. Any other error, and any before that point, stays "error".
let closingSockets = false;

function closesSockets(client) {
  const mqClient = client._mqClient;
  const close = mqClient.close;
  mqClient.close = async function(...args) {
    closingSockets = true;
    return close.apply(this, args);
  };
}

function fail(err) {
  const message = String(err && err.stack || err);
  let event = message.includes(ON_PURPOSE) ? 'thrown' : 'error';
  if (closingSockets && err && err.name === 'SocketCloseError') event = 'closeRace';
  emit({ event, message });
}

function deadline(ms) {
  setTimeout(() => {
    emit({ event: 'deadline' });
    process.exit(3);
  }, ms).unref();
}

async function produce() {
  const producer = new Producer({
    httpclient: {},
    nameSrv: cfg.nameSrv,
    producerGroup: cfg.group,
    logger: quiet,
    ...timers,
    ...credentials,
  });
  producer.on('error', fail);
  const kernel = producer.sendKernelImpl;
  producer.sendKernelImpl = async function(...args) {
    try {
      return await kernel.apply(this, args);
    } catch (err) {
      emit({ event: 'sendFailed', code: err.code, message: String(err.message) });
      throw err;
    }
  };
  await producer.ready();
  closesSockets(producer);
  for (const m of cfg.messages) {
    const msg = new Message(cfg.topic, m.tag || '', m.body);
    if (m.keys) msg.keys = m.keys;
    if (m.delayTimeLevel) msg.delayTimeLevel = m.delayTimeLevel;
    const r = await producer.send(msg);
    emit({
      event: 'sent',
      sentAt: Date.now(),
      body: m.body,
      tag: m.tag || '',
      status: r.sendStatus,
      msgId: r.msgId,
      queueId: r.messageQueue.queueId,
      queueOffset: Number(r.queueOffset),
    });
  }
  await producer.close();
  emit({ event: 'closed' });
}

function queueIds(consumer) {
  const ids = [];
  for (const { messageQueue } of consumer.processQueueTable.values()) {
    if (messageQueue.topic === cfg.topic) ids.push(messageQueue.queueId);
  }
  return ids.sort((a, b) => a - b);
}

// How the handler answers: ACTION_RETRY for the chosen bodies, `times` times per body.
function retryPolicy() {
  const retry = cfg.retry;
  const failed = new Map();
  return body => {
    if (!retry || (retry.bodies && !retry.bodies.includes(body))) return false;
    const n = failed.get(body) || 0;
    if (retry.times !== undefined && n >= retry.times) return false;
    failed.set(body, n + 1);
    return true;
  };
}

async function consume() {
  const shouldRetry = retryPolicy();
  const extra = {};
  if (cfg.maxReconsumeTimes !== undefined) extra.maxReconsumeTimes = cfg.maxReconsumeTimes;
  const consumer = new Consumer({
    httpclient: {},
    nameSrv: cfg.nameSrv,
    consumerGroup: cfg.group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
    isBroadcast: !!cfg.broadcast,
    logger: quiet,
    ...timers,
    ...extra,
    ...credentials,
  });
  consumer.on('error', fail);
  // ali-ons calls handler(msg, mq, pq) for its own subscriptions but handler(msg) from the wrapper
  // of %RETRY%<group>, which ignores what the handler returns.
  consumer.subscribe(cfg.topic, cfg.subExpression || '*', async (msg, mq) => {
    const body = msg.body.toString();
    const viaRetryTopic = mq === undefined;
    const action = shouldRetry(body) ? (viaRetryTopic ? 'throw' : 'retry') : 'ok';
    emit({
      event: 'message',
      at: Date.now(),
      action,
      viaRetryTopic,
      topic: msg.topic, // a retried message's first topic: ali-ons restores it
      retryTopic: msg.retryTopic || null,
      originMsgId: msg.originMessageId || null,
      body,
      tags: msg.tags || '',
      keys: msg.keys,
      msgId: msg.msgId,
      queueId: msg.queueId,
      queueOffset: Number(msg.queueOffset),
      reconsumeTimes: msg.reconsumeTimes,
      bornTimestamp: Number(msg.bornTimestamp),
      storeTimestamp: Number(msg.storeTimestamp),
    });
    if (action === 'throw') throw new Error(ON_PURPOSE);
    return action === 'retry' ? Consumer.ACTION_RETRY : undefined;
  });
  await consumer.ready();
  closesSockets(consumer);
  emit({ event: 'ready', clientId: consumer._mqClient.clientId });

  // Report the allocated queues whenever a rebalance changes them.
  let last = '';
  const watch = setInterval(() => {
    const ids = queueIds(consumer);
    const key = JSON.stringify(ids);
    if (key !== last) {
      last = key;
      emit({ event: 'queues', queues: ids });
    }
  }, 50);

  await new Promise(resolve => {
    process.stdin.on('end', resolve);
    process.stdin.on('error', resolve);
    process.stdin.resume();
  });
  clearInterval(watch);
  await consumer.close();
  emit({ event: 'closed' });
}

deadline(cfg.deadlineMs || 60000);
(cfg.role === 'produce' ? produce() : consume()).then(
  () => process.exit(0),
  err => {
    fail(err);
    process.exit(1);
  }
);
