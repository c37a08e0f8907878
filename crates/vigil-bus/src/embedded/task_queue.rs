//! An in-process task queue with the RabbitMQ semantics Vigil uses for obstacle tasks:
//! priorities (higher first, FIFO within a priority), a per-task deadline checked when a
//! consumer takes the task (an expired task is dead-lettered, never delivered late),
//! manual ack / nack with redelivery up to a retry limit, dead letters with a reason, a
//! bound on queued tasks (publishing into a full queue is refused, like `x-max-length`
//! with `reject-publish`, unless the new task is more urgent than the least urgent one
//! queued, which is then dead-lettered as displaced), and recovery of unacknowledged deliveries when a consumer
//! goes away. Every task ends in a counted state: the counts always balance.
//!
//! Time is whatever the caller passes (`now_ns`, from the clock it was given).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use vigil_core::Nanos;

pub use crate::task::{DeadReason, MAX_PRIORITY, QueueCounts, QueueError, QueuedTask};

/// A task handed to a consumer; ack or nack it by `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub tag: u64,
    /// 1 for the first delivery, 2 for the first redelivery, …
    pub attempt: u32,
    pub task: QueuedTask,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub task: QueuedTask,
    pub reason: DeadReason,
    pub attempts: u32,
}

/// Dead letters a queue keeps for inspection: a process that runs for months must not
/// keep every expired task.
pub const DEAD_LETTERS_KEPT: usize = 1024;

#[derive(Debug, Default)]
struct State {
    /// priority → FIFO of (attempts so far, task).
    ready: BTreeMap<u8, VecDeque<(u32, QueuedTask)>>,
    unacked: HashMap<u64, (u32, QueuedTask)>,
    /// The newest dead letters, for inspection ([`DEAD_LETTERS_KEPT`] at most; the counts
    /// hold every one).
    dead: VecDeque<DeadLetter>,
    next_tag: u64,
    counts: QueueCounts,
}

impl State {
    fn queued(&self) -> usize {
        self.ready.values().map(VecDeque::len).sum()
    }
    fn dead_letter(&mut self, task: QueuedTask, reason: DeadReason, attempts: u32) {
        self.counts.dead_lettered += 1;
        if reason == DeadReason::Expired {
            self.counts.expired += 1;
        }
        if self.dead.len() == DEAD_LETTERS_KEPT {
            self.dead.pop_front();
        }
        self.dead.push_back(DeadLetter { task, reason, attempts });
    }
    fn refresh(&mut self) {
        self.counts.queued = self.queued() as u64;
        self.counts.peak_queued = self.counts.peak_queued.max(self.counts.queued);
        self.counts.unacked = self.unacked.len() as u64;
    }
}

/// A cloneable handle to one queue.
#[derive(Debug, Clone)]
pub struct TaskQueue {
    inner: Arc<(Mutex<State>, Condvar)>,
    notify: Arc<tokio::sync::Notify>,
    capacity: usize,
    max_attempts: u32,
}

impl TaskQueue {
    /// A queue holding at most `capacity` ready tasks; a task is dead-lettered after
    /// `max_attempts` deliveries without an ack.
    pub fn new(capacity: usize, max_attempts: u32) -> Self {
        Self {
            inner: Arc::new((Mutex::new(State::default()), Condvar::new())),
            notify: Arc::new(tokio::sync::Notify::new()),
            capacity: capacity.max(1),
            max_attempts: max_attempts.max(1),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, QueueError> {
        self.inner.0.lock().map_err(|_| QueueError::Poisoned)
    }

    pub fn publish(&self, task: QueuedTask) -> Result<(), QueueError> {
        if task.priority > MAX_PRIORITY {
            return Err(QueueError::Priority(task.priority));
        }
        let mut s = self.lock()?;
        if s.queued() >= self.capacity {
            // Full: a more urgent task displaces the newest of the least urgent ones
            // (dead-lettered); otherwise the publish is refused.
            let lowest = s.ready.iter().find(|(_, q)| !q.is_empty()).map(|(p, _)| *p);
            match lowest {
                Some(p) if p < task.priority => {
                    if let Some((attempts, old)) = s.ready.get_mut(&p).and_then(VecDeque::pop_back) {
                        s.dead_letter(old, DeadReason::Displaced, attempts);
                    }
                }
                _ => {
                    s.counts.refused_full += 1;
                    return Err(QueueError::Full { capacity: self.capacity });
                }
            }
        }
        s.counts.published += 1;
        s.ready.entry(task.priority).or_default().push_back((0, task));
        s.refresh();
        drop(s);
        self.inner.1.notify_one();
        self.notify.notify_waiters();
        Ok(())
    }

    /// Takes the most urgent live task. Tasks found expired on the way are dead-lettered.
    pub fn take(&self, now_ns: Nanos) -> Result<Option<Delivery>, QueueError> {
        let mut s = self.lock()?;
        Ok(Self::take_locked(&mut s, now_ns))
    }

    fn take_locked(s: &mut State, now_ns: Nanos) -> Option<Delivery> {
        loop {
            let priority = *s.ready.iter().rev().find(|(_, q)| !q.is_empty())?.0;
            let (attempts, task) = s.ready.get_mut(&priority)?.pop_front()?;
            if task.deadline_ns < now_ns {
                s.dead_letter(task, DeadReason::Expired, attempts);
                s.refresh();
                continue;
            }
            s.next_tag += 1;
            let tag = s.next_tag;
            let attempt = attempts + 1;
            s.counts.delivered += 1;
            if attempt > 1 {
                s.counts.redelivered += 1;
            }
            s.unacked.insert(tag, (attempt, task.clone()));
            s.refresh();
            return Some(Delivery { tag, attempt, task });
        }
    }

    /// Like [`take`](Self::take), waiting up to `timeout` for a task to arrive;
    /// `now` is asked again after every wake-up.
    pub fn take_wait(&self, now: impl Fn() -> Nanos, timeout: Duration) -> Result<Option<Delivery>, QueueError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut s = self.lock()?;
        loop {
            if let Some(d) = Self::take_locked(&mut s, now()) {
                return Ok(Some(d));
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            s = self.inner.1.wait_timeout(s, left).map_err(|_| QueueError::Poisoned)?.0;
        }
    }

    /// Async [`take`](Self::take): waits (without blocking the thread) until a live task
    /// arrives; `now` is asked again after every wake-up.
    pub async fn take_async(&self, now: impl Fn() -> Nanos) -> Result<Delivery, QueueError> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(d) = self.take(now())? {
                return Ok(d);
            }
            // The timeout only bounds a missed wake-up; publish and nack notify.
            let _ = tokio::time::timeout(Duration::from_millis(20), notified).await;
        }
    }

    /// Dead-letters every queued task whose deadline is before `now_ns`; returns how many.
    pub fn sweep_expired(&self, now_ns: Nanos) -> Result<u64, QueueError> {
        let mut s = self.lock()?;
        let mut expired = Vec::new();
        for q in s.ready.values_mut() {
            let (dead, live): (VecDeque<_>, VecDeque<_>) = q.drain(..).partition(|(_, t)| t.deadline_ns < now_ns);
            *q = live;
            expired.extend(dead);
        }
        let n = expired.len() as u64;
        for (attempts, task) in expired {
            s.dead_letter(task, DeadReason::Expired, attempts);
        }
        s.refresh();
        Ok(n)
    }

    pub fn ack(&self, tag: u64) -> Result<(), QueueError> {
        let mut s = self.lock()?;
        s.unacked.remove(&tag).ok_or(QueueError::UnknownTag(tag))?;
        s.counts.acked += 1;
        s.refresh();
        Ok(())
    }

    /// Rejects a delivery: requeued (at the front of its priority) unless `requeue` is
    /// false or it has had `max_attempts` deliveries, in which case it is dead-lettered.
    pub fn nack(&self, tag: u64, requeue: bool) -> Result<(), QueueError> {
        let mut s = self.lock()?;
        let (attempts, task) = s.unacked.remove(&tag).ok_or(QueueError::UnknownTag(tag))?;
        if !requeue {
            s.dead_letter(task, DeadReason::Rejected, attempts);
        } else if attempts >= self.max_attempts {
            s.dead_letter(task, DeadReason::MaxAttempts, attempts);
        } else {
            s.ready.entry(task.priority).or_default().push_front((attempts, task));
        }
        s.refresh();
        drop(s);
        self.inner.1.notify_one();
        self.notify.notify_waiters();
        Ok(())
    }

    /// Dead-letters an unacknowledged delivery with `reason` (a worker found it expired,
    /// or could not process it at all).
    pub fn dead_letter_delivery(&self, tag: u64, reason: DeadReason) -> Result<(), QueueError> {
        let mut s = self.lock()?;
        let (attempts, task) = s.unacked.remove(&tag).ok_or(QueueError::UnknownTag(tag))?;
        s.dead_letter(task, reason, attempts);
        s.refresh();
        Ok(())
    }

    /// A consumer went away: its unacknowledged deliveries go back to the queue.
    pub fn recover(&self, tags: &[u64]) -> Result<usize, QueueError> {
        let mut recovered = 0;
        for &tag in tags {
            if self.nack(tag, true).is_ok() {
                recovered += 1;
            }
        }
        Ok(recovered)
    }

    pub fn counts(&self) -> Result<QueueCounts, QueueError> {
        Ok(self.lock()?.counts)
    }

    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.lock()?.dead.iter().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, priority: u8, deadline_ns: Nanos) -> QueuedTask {
        QueuedTask { task_id: id.into(), priority, deadline_ns, payload: id.as_bytes().to_vec() }
    }

    fn balanced(c: &QueueCounts) -> bool {
        c.published == c.acked + c.dead_lettered + c.queued + c.unacked
    }

    #[test]
    fn higher_priority_first_fifo_within() {
        let q = TaskQueue::new(16, 3);
        q.publish(task("a", 1, 100)).unwrap();
        q.publish(task("b", 5, 100)).unwrap();
        q.publish(task("c", 5, 100)).unwrap();
        q.publish(task("d", 9, 100)).unwrap();
        let order: Vec<String> = (0..4).map(|_| q.take(0).unwrap().unwrap().task.task_id).collect();
        assert_eq!(order, ["d", "b", "c", "a"]);
        assert_eq!(q.take(0).unwrap(), None);
        assert!(q.publish(task("x", 10, 0)).is_err());
    }

    #[test]
    fn expired_tasks_are_dead_lettered_at_take_never_delivered() {
        let q = TaskQueue::new(16, 3);
        q.publish(task("late", 9, 50)).unwrap();
        q.publish(task("ok", 1, 500)).unwrap();
        let d = q.take(100).unwrap().unwrap();
        assert_eq!(d.task.task_id, "ok");
        let dead = q.dead_letters().unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!((dead[0].task.task_id.as_str(), dead[0].reason), ("late", DeadReason::Expired));
        let c = q.counts().unwrap();
        assert_eq!((c.expired, c.dead_lettered, c.unacked), (1, 1, 1));
        assert!(balanced(&c));
    }

    #[test]
    fn nack_redelivers_until_max_attempts_then_dead_letters() {
        let q = TaskQueue::new(16, 3);
        q.publish(task("t", 5, 1_000)).unwrap();
        for attempt in 1..=3 {
            let d = q.take(0).unwrap().unwrap();
            assert_eq!(d.attempt, attempt);
            q.nack(d.tag, true).unwrap();
        }
        assert_eq!(q.take(0).unwrap(), None);
        let dead = q.dead_letters().unwrap();
        assert_eq!((dead[0].reason, dead[0].attempts), (DeadReason::MaxAttempts, 3));
        let c = q.counts().unwrap();
        assert_eq!((c.delivered, c.redelivered), (3, 2));
        assert!(balanced(&c));
        assert_eq!(q.ack(999), Err(QueueError::UnknownTag(999)));
    }

    #[test]
    fn reject_without_requeue_and_ack() {
        let q = TaskQueue::new(16, 3);
        q.publish(task("a", 1, 1_000)).unwrap();
        q.publish(task("b", 1, 1_000)).unwrap();
        let a = q.take(0).unwrap().unwrap();
        let b = q.take(0).unwrap().unwrap();
        q.ack(a.tag).unwrap();
        q.nack(b.tag, false).unwrap();
        assert_eq!(q.ack(a.tag), Err(QueueError::UnknownTag(a.tag)), "double ack is refused");
        let c = q.counts().unwrap();
        assert_eq!((c.acked, c.dead_lettered), (1, 1));
        assert_eq!(q.dead_letters().unwrap()[0].reason, DeadReason::Rejected);
        assert!(balanced(&c));
    }

    #[test]
    fn full_queue_refuses_equal_urgency_and_lets_more_urgent_tasks_displace_the_least_urgent() {
        let q = TaskQueue::new(2, 3);
        q.publish(task("a", 1, 1)).unwrap();
        q.publish(task("b", 1, 1)).unwrap();
        assert_eq!(q.publish(task("c", 1, 1)), Err(QueueError::Full { capacity: 2 }));
        let c = q.counts().unwrap();
        assert_eq!((c.published, c.refused_full, c.queued), (2, 1, 2));
        q.publish(task("d", 9, 1)).unwrap();
        let c = q.counts().unwrap();
        assert_eq!((c.published, c.queued, c.dead_lettered, c.peak_queued), (3, 2, 1, 2));
        let dead = q.dead_letters().unwrap();
        assert_eq!((dead[0].task.task_id.as_str(), dead[0].reason), ("b", DeadReason::Displaced));
        assert_eq!(q.take(0).unwrap().unwrap().task.task_id, "d");
        assert!(balanced(&q.counts().unwrap()));
    }

    #[test]
    fn sweep_dead_letters_only_expired_tasks() {
        let q = TaskQueue::new(8, 3);
        q.publish(task("old", 5, 10)).unwrap();
        q.publish(task("live", 5, 1_000)).unwrap();
        assert_eq!(q.sweep_expired(100).unwrap(), 1);
        let c = q.counts().unwrap();
        assert_eq!((c.expired, c.queued), (1, 1));
        assert!(balanced(&c));
    }

    #[test]
    fn recovered_deliveries_come_back_with_a_higher_attempt() {
        let q = TaskQueue::new(8, 5);
        q.publish(task("a", 3, 1_000)).unwrap();
        let d = q.take(0).unwrap().unwrap();
        assert_eq!(q.recover(&[d.tag]).unwrap(), 1);
        let again = q.take(0).unwrap().unwrap();
        assert_eq!((again.task.task_id.as_str(), again.attempt), ("a", 2));
    }

    #[test]
    fn take_wait_wakes_on_publish() {
        let q = TaskQueue::new(8, 3);
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.take_wait(|| 0, Duration::from_secs(5)).unwrap());
        std::thread::sleep(Duration::from_millis(20));
        q.publish(task("w", 1, 10)).unwrap();
        assert_eq!(h.join().unwrap().unwrap().task.task_id, "w");
        assert_eq!(q.take_wait(|| 0, Duration::from_millis(10)).unwrap(), None);
    }

    #[test]
    fn counts_balance_under_a_random_workload() {
        // A deterministic pseudo-random mix of every operation; the books must balance
        // after each step, and at the end every task is acked or dead-lettered.
        let q = TaskQueue::new(32, 3);
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut held: Vec<u64> = Vec::new();
        let mut now = 0;
        for i in 0..5_000u64 {
            now += 1;
            match next() % 6 {
                0 | 1 => {
                    let _ = q.publish(task(&format!("t{i}"), (next() % 10) as u8, now + (next() % 40) as i64));
                }
                2 => {
                    if let Some(d) = q.take(now).unwrap() {
                        held.push(d.tag);
                    }
                }
                3 if !held.is_empty() => q.ack(held.swap_remove((next() as usize) % held.len())).unwrap(),
                4 if !held.is_empty() => {
                    q.nack(held.swap_remove((next() as usize) % held.len()), next() % 4 != 0).unwrap()
                }
                _ => {}
            }
            assert!(balanced(&q.counts().unwrap()), "step {i}: {:?}", q.counts().unwrap());
        }
        for tag in held.drain(..) {
            q.ack(tag).unwrap();
        }
        while let Some(d) = q.take(now).unwrap() {
            q.ack(d.tag).unwrap();
        }
        let c = q.counts().unwrap();
        assert_eq!(c.published, c.acked + c.dead_lettered);
        assert!(c.expired > 0 && c.redelivered > 0 && c.refused_full > 0, "{c:?}");
    }
}
