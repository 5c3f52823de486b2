'use strict';
// ali-ons (npm, pure-JS RocketMQ remoting client) driven by tests/interop: one process = one
// producer or one push consumer. Usage: node alions_client.js '<json config>'.
// Prints one JSON object a line on stdout ("event": ready | queues | sent | message | error |
// closed). A consumer runs until its stdin closes (then closes the consumer cleanly) or until
// deadlineMs passes (exit 3). Needs NODE_PATH=<dir with ali-ons installed>/node_modules.

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

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(err) {
  emit({ event: 'error', message: String(err && err.stack || err) });
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
  });
  producer.on('error', fail);
  await producer.ready();
  for (const m of cfg.messages) {
    const msg = new Message(cfg.topic, m.tag || '', m.body);
    if (m.keys) msg.keys = m.keys;
    const r = await producer.send(msg);
    emit({
      event: 'sent',
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

async function consume() {
  const consumer = new Consumer({
    httpclient: {},
    nameSrv: cfg.nameSrv,
    consumerGroup: cfg.group,
    consumeFromWhere: 'CONSUME_FROM_FIRST_OFFSET',
    isBroadcast: !!cfg.broadcast,
    logger: quiet,
    ...timers,
  });
  consumer.on('error', fail);
  consumer.subscribe(cfg.topic, cfg.subExpression || '*', async msg => {
    emit({
      event: 'message',
      topic: msg.topic,
      body: msg.body.toString(),
      tags: msg.tags || '',
      keys: msg.keys,
      msgId: msg.msgId,
      queueId: msg.queueId,
      queueOffset: Number(msg.queueOffset),
      reconsumeTimes: msg.reconsumeTimes,
    });
  });
  await consumer.ready();
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
