//! Connecting, the supervisor that reconnects and samples the queue, and subscriptions.

use super::*;

impl AmqpTasks {
    /// Connects, declares the topology and starts the supervisor (reconnection and the
    /// queue-depth sampler). `clock` sets each task's remaining budget; `rt` runs the
    /// connection. A broker that cannot be reached within a second is warned about and
    /// retried in the background: publishes fail fast (the vehicle falls back) and
    /// consumers subscribe once it answers. A broker that answers and refuses (a wrong
    /// URL, credentials, vhost or topology) is an error at once.
    pub async fn connect(cfg: &AmqpConfig, clock: Arc<dyn Clock>, rt: Handle) -> Result<Self, TransportError> {
        let url = amqp_url(cfg)?;
        let uri = url.parse::<lapin::uri::AMQPUri>().map_err(|e| {
            err(format!("RabbitMQ URL {}", redact(&url)), format!("{e} (e.g. amqp://user:pass@host:5672/%2f)"))
        })?;
        let reply_key = cfg.reply_key()?;
        let names = Names::new(&cfg.prefix);
        let (live, down_since) = match open(&url, cfg, &names, &rt, FIRST_CONNECT_TIMEOUT).await {
            Ok(live) => (Some(live), None),
            Err(OpenError::Unreachable(e)) => {
                tracing::warn!(
                    error = %e,
                    "RabbitMQ is unreachable; driving on with every obstacle task falling back to the on-board policy, reconnecting with backoff"
                );
                (None, Some(std::time::Instant::now()))
            }
            Err(OpenError::Refused(e)) => return Err(e),
        };
        let me = Self {
            inner: Arc::new(Inner {
                url,
                user: uri.authority.userinfo.username,
                reply_key,
                live: RwLock::new(live),
                cfg: cfg.clone(),
                names,
                clock,
                rt,
                counts: AmqpCounts::default(),
            }),
        };
        me.spawn_supervisor(down_since);
        Ok(me)
    }

    pub fn names(&self) -> &Names {
        &self.inner.names
    }

    pub fn amqp_counts(&self) -> &AmqpCounts {
        &self.inner.counts
    }

    /// Whether the connection is up (false while it reconnects).
    pub fn connected(&self) -> bool {
        self.live().is_some_and(|l| l.up())
    }

    /// Messages now in the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> Result<u32, TransportError> {
        let ch = self.channel().await?;
        let q = ch
            .queue_declare(self.inner.names.dead.as_str().into(), passive(), FieldTable::default())
            .await
            .map_err(|e| err("dead-letter queue depth", e))?;
        Ok(q.message_count())
    }

    pub(super) fn live(&self) -> Option<Live> {
        self.inner.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new channel on the connection now.
    pub(super) async fn channel(&self) -> Result<Channel, TransportError> {
        let live = self.live().ok_or_else(|| err("RabbitMQ channel", "not connected (reconnecting)"))?;
        live.conn.create_channel().await.map_err(|e| err("RabbitMQ channel", e))
    }

    /// A new channel once the connection is up again (consumers re-subscribing).
    pub(super) async fn channel_when_up(&self) -> Channel {
        let mut delay = Duration::from_millis(100);
        loop {
            if let Some(live) = self.live().filter(Live::up)
                && let Ok(Ok(ch)) = tokio::time::timeout(CONNECT_TIMEOUT, live.conn.create_channel()).await
            {
                return ch;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(250));
        }
    }

    /// Watches the connection every 100 ms: reconnects (backoff 100 ms → 2 s) when it is
    /// lost, and samples the task queue's depth while it is up. Every wait is bounded,
    /// so a broker that stops answering cannot stall the watch.
    pub(super) fn spawn_supervisor(&self, mut down_since: Option<std::time::Instant>) {
        let weak = Arc::downgrade(&self.inner);
        self.inner.rt.spawn(async move {
            let mut sampler: Option<Channel> = None;
            let mut backoff = Duration::from_millis(100);
            let mut sample_after = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Some(inner) = weak.upgrade() else { return };
                let me = AmqpTasks { inner };
                let live = me.live();
                if !live.as_ref().is_some_and(Live::up) {
                    if down_since.is_none() {
                        tracing::warn!("RabbitMQ connection lost; reconnecting");
                        down_since = Some(std::time::Instant::now());
                        if let Some(old) = me.inner.live.write().unwrap_or_else(|e| e.into_inner()).take() {
                            // Best effort: the socket is usually gone already.
                            me.inner.rt.spawn(async move {
                                let _ =
                                    tokio::time::timeout(SAMPLE_TIMEOUT, old.conn.close(200, "reconnecting".into()))
                                        .await;
                            });
                        }
                        sampler = None;
                    }
                    match open(&me.inner.url, &me.inner.cfg, &me.inner.names, &me.inner.rt, CONNECT_TIMEOUT).await {
                        Ok(new) => {
                            *me.inner.live.write().unwrap_or_else(|e| e.into_inner()) = Some(new);
                            me.inner.counts.recoveries.fetch_add(1, Ordering::Relaxed);
                            let after = down_since.take().map(|t| t.elapsed()).unwrap_or_default();
                            tracing::info!(after_ms = after.as_millis() as u64, "RabbitMQ connection recovered");
                            backoff = Duration::from_millis(100);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e.into_inner(), "RabbitMQ reconnect attempt failed");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                    }
                    continue;
                }
                if tokio::time::Instant::now() < sample_after {
                    continue;
                }
                if sampler.as_ref().is_none_or(|c| !c.status().connected()) {
                    sampler = me.channel().await.ok();
                }
                let Some(c) = &sampler else { continue };
                let declare = c.queue_declare(me.inner.names.queue.as_str().into(), passive(), FieldTable::default());
                match tokio::time::timeout(SAMPLE_TIMEOUT, declare).await {
                    Ok(Ok(q)) => {
                        let n = q.message_count() as u64;
                        me.inner.counts.queued.store(n, Ordering::Relaxed);
                        me.inner.counts.peak_queued.fetch_max(n, Ordering::Relaxed);
                    }
                    // The queue was deleted (a benchmark's teardown) or the channel is
                    // stuck: close it and look again in 2 s.
                    _ => {
                        sample_after = tokio::time::Instant::now() + Duration::from_secs(2);
                        if let Some(c) = sampler.take() {
                            let _ = tokio::time::timeout(SAMPLE_TIMEOUT, c.close(200, "sampler".into())).await;
                        }
                    }
                }
            }
        });
    }

    /// `basic.qos` and `basic.consume` on the task queue.
    pub(super) async fn subscribe_tasks(
        &self,
        channel: &Channel,
        tag: &str,
    ) -> Result<lapin::Consumer, TransportError> {
        channel
            .basic_qos(self.inner.cfg.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| err("basic.qos", e))?;
        channel
            .basic_consume(
                self.inner.names.queue.as_str().into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| err(format!("consuming `{}`", self.inner.names.queue), e))
    }

    /// Declares a vehicle's reply queue and consumes it.
    pub(super) async fn subscribe_replies(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<lapin::Consumer, TransportError> {
        // Not durable: replies are worthless after a restart; it outlives a short
        // disconnect and is removed a minute after its vehicle is gone.
        let args = table(&[("x-expires", AMQPValue::LongLongInt(60_000))]);
        channel
            .queue_declare(queue.into(), QueueDeclareOptions::default(), args)
            .await
            .map_err(|e| err(format!("declaring reply queue `{queue}`"), e))?;
        channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions { no_ack: true, exclusive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .map_err(|e| err(format!("consuming `{queue}`"), e))
    }

    pub(super) async fn subscribe(
        &self,
        channel: &Channel,
        to: &Subscription,
    ) -> Result<lapin::Consumer, TransportError> {
        match to {
            Subscription::Tasks { tag } => self.subscribe_tasks(channel, tag).await,
            Subscription::Replies { queue } => self.subscribe_replies(channel, queue).await,
        }
    }

    /// Subscribes now while the connection is up (a refusal is the caller's error); while
    /// it is down, the consumer subscribes on its first `next` once it is back.
    pub(super) async fn subscribe_if_up(&self, to: &Subscription) -> Result<Subscribed, TransportError> {
        if !self.connected() {
            return Ok(None);
        }
        let channel = self.channel().await?;
        let consumer = self.subscribe(&channel, to).await?;
        Ok(Some((channel, consumer)))
    }

    /// After a consumer ended (`end`: its last item), waits for the supervisor to
    /// reconnect and subscribes again, retrying until it succeeds. The broker requeues
    /// what the lost channel held unacked.
    pub(super) async fn resubscribe(
        &self,
        to: &Subscription,
        end: Option<Result<lapin::message::Delivery, lapin::Error>>,
    ) -> (Channel, lapin::Consumer) {
        match end {
            Some(Err(e)) => {
                tracing::warn!(error = %e, consumer = to.what(), "consumer interrupted; subscribing again after reconnect")
            }
            Some(Ok(_)) => {}
            None if self.connected() => tracing::warn!(consumer = to.what(), "consumer ended; subscribing again"),
            None => tracing::debug!(consumer = to.what(), "subscribing once RabbitMQ answers"),
        }
        loop {
            let channel = self.channel_when_up().await;
            match self.subscribe(&channel, to).await {
                Ok(consumer) => {
                    tracing::info!(consumer = to.what(), "consumer subscribed again");
                    return (channel, consumer);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "subscribing again failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
