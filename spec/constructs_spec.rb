# frozen_string_literal: true

RSpec.describe 'Constructs' do
  it 'replaces the stdlib synchronisation constants, but not SizedQueue' do
    expect(Queue).to eq(Polyphony::Queue)
    expect(Thread::Queue).to eq(Polyphony::Queue)
    expect(Mutex).to eq(Polyphony::Mutex)
    expect(Thread::Mutex).to eq(Polyphony::Mutex)
    expect(ConditionVariable).to eq(Polyphony::ConditionVariable)
    expect(Monitor).to eq(Polyphony::Monitor)
    expect(SizedQueue.name).to eq('Thread::SizedQueue')
  end

  describe 'Queue' do
    it 'parks a shifter until a push, FIFO' do
      q = Queue.new
      got = []
      f = spin { 3.times { got << q.shift } }
      snooze
      q << 1 << 2
      q.push(3)
      f.await
      expect(got).to eq([1, 2, 3])
    end

    it 'takes initial items from an enumerable or a capacity (differences.md: Queue stdlib signatures)' do
      expect(Queue.new([1, 2]).shift_all).to eq([1, 2])
      expect(Queue.new(1..3).size).to eq(3)
      expect(Queue.new(2).capped?).to eq(2)
      expect { Queue.new(:x) }.to raise_error(TypeError)
    end

    it 'supports pop(timeout:) and non-blocking shift' do
      q = Queue.new
      t = monotonic
      expect(q.pop(timeout: 0.02)).to be_nil
      expect(monotonic - t).to be_between(0.015, 0.5)
      expect { q.shift(true) }.to raise_error(ThreadError, 'queue empty')
      spin { q << :x }
      expect(q.pop(timeout: 1)).to eq(:x)
      expect(q.num_waiting).to eq(0)
    end

    # CappedQueueTest of Polyphony's test_queue.rb, as the contract quotes it:
    # a capped push and a blocking shift are switchpoints even when they need
    # not wait.
    it 'follows the capped-queue interleaving of the contract exactly' do
      q = Queue.new(3)
      log = []
      producer = spin do
        (1..5).each { |i| q.push(i); log << :"p#{i}" }
        q.push(:stop)
      end
      snooze
      consumer = spin_loop do
        i = q.shift
        raise Polyphony::MoveOn if i == :stop

        log << :"s#{i}"
      end
      Fiber.await(producer, consumer)
      expect(log).to eq(%i[p1 p2 s1 p3 s2 p4 s3 p5 s4 s5])
    end

    it 'lets a pusher blocked on a full capped queue in after clear and delete' do
      q = Queue.new(3)
      log = []
      producer = spin { (1..5).each { |i| q.push(i); log << i } }
      snooze while log.size < 3
      q.clear
      log << :clear
      producer.await
      expect(log).to eq([1, 2, 3, :clear, 4, 5])

      q = Queue.new(3)
      log = []
      spin { (1..5).each { |i| q.push(i); log << i } }
      5.times { snooze }
      expect(log).to eq([1, 2, 3])
      q.delete(1)
      log << :del
      5.times { snooze }
      expect(log).to eq([1, 2, 3, :del, 4])
      q.delete(2)
      log << :del
      5.times { snooze }
      expect(log).to eq([1, 2, 3, :del, 4, :del, 5])
    end

    it 'is a switchpoint in shift even when an item is ready' do
      q = Queue.new([1, 2])
      log = []
      spin { log << :other }
      log << q.shift
      expect(log).to eq([:other, 1])
    end

    it 'closes: pushes raise, waiters get nil, remaining items drain' do
      q = Queue.new
      waiter = spin { q.shift }
      snooze
      q.close
      expect(waiter.await).to be_nil
      expect { q << 1 }.to raise_error(ClosedQueueError)
      expect(q.closed?).to be(true)
      q2 = Queue.new([1])
      q2.close
      expect(q2.shift).to eq(1)
      expect { q2.shift }.to raise_error(ClosedQueueError)
    end

    it 'deletes, clears, shift_each, flush_waiters and reports waiting shifters' do
      q = Queue.new([1, 2, 1])
      q.delete(1)
      expect(q.shift_all).to eq([2, 1])
      q << 3 << 4
      seen = []
      q.shift_each { |v| seen << v }
      expect(seen).to eq([3, 4])
      w = spin { q.shift }
      snooze
      expect(q.pending?).to be(true)
      q.flush_waiters(IOError.new('flushed'))
      expect { w.await }.to raise_error(IOError, 'flushed')
      expect(q.pending?).to be(false)
    end

    it 'keeps items consistent when a waiter is stopped' do
      q = Queue.new
      a = spin { q.shift }
      b = spin { q.shift }
      snooze
      q << :item
      a.stop
      expect(b.await).to eq(:item)
    end

    it 'wakes a fiber blocked in shift from another thread' do
      q = Queue.new
      f = spin { 100.times.map { q.shift } }
      t = Thread.new { 100.times { |i| q << i } }
      expect(f.await).to eq((0..99).to_a)
      t.join
    end

    it 'unshifts to the head and blocks a pusher on a full capped queue' do
      q = Queue.new(1)
      q << :a
      pusher = spin { q << :b; :pushed }
      snooze
      expect(pusher.state).to eq(:waiting)
      expect(q.shift).to eq(:a)
      expect(pusher.await).to eq(:pushed)
      q.cap(0)
      q.unshift(:first)
      expect(q.shift_all).to eq(%i[first b])
    end

    it 'reports its size, gives the closed message and closes idempotently' do
      q = Queue.new
      expect(q.empty?).to be(true)
      q << 1 << 2
      expect([q.size, q.length, q.empty?]).to eq([2, 2, false])
      expect(q.close).to equal(q)
      expect(q.close).to equal(q)
      expect(q.closed?).to be(true)
      expect { q.push(3) }.to raise_error(ClosedQueueError, 'queue closed')
      expect { q.unshift(0) }.to raise_error(ClosedQueueError, 'queue closed')
      expect(q.shift_all).to eq([1, 2])
    end

    it 'releases pushers blocked on a capped queue in FIFO order, all of them on cap(0)' do
      q = Queue.new(1)
      q << :x
      pushers = %i[a b c].map { |v| spin { q << v } }
      snooze
      expect(4.times.map { q.shift }).to eq(%i[x a b c])
      Fiber.await(pushers)

      q << :x
      pushers = %i[a b c].map { |v| spin { q << v } }
      snooze
      expect(pushers.map(&:state)).to eq(%i[waiting waiting waiting])
      q.cap(0)
      Fiber.await(pushers)
      expect(q.shift_all).to eq(%i[x a b c])
      expect(q.capped?).to be_nil
    end

    it 'sends a waiter woken by flush_waiters with a plain value back to waiting' do
      q = Queue.new
      w = spin { q.shift }
      snooze
      q.flush_waiters(:nothing)
      snooze
      expect(w.state).to eq(:waiting)
      q << :real
      expect(w.await).to eq(:real)
    end

    it 'rejects a bad capacity' do
      expect { Queue.new.cap(-1) }.to raise_error(ArgumentError)
      expect { Queue.new.cap('x') }.to raise_error(TypeError)
    end

    # The native queue (ext/polyphony/src/core/queue.rs) takes a ready item
    # without switching when no other fiber could run; these pin what that
    # shortcut must keep.
    context 'native fast paths' do
      it 'still lets a timer in while a fiber loops over ready items alone' do
        q = Queue.new
        n = 0
        # Runs to the end (about a second) unless shift polls now and then.
        r = move_on_after(0.05, with_value: :timed_out) do
          10_000_000.times do
            q << n
            n += 1 if q.shift == n
          end
          :not_interrupted
        end
        expect(r).to eq(:timed_out)
        expect(n).to be > 100
      end

      it 'lets runnable fibers run first when an item is ready' do
        q = Queue.new
        q << 1
        order = []
        spin { order << :other }
        order << q.shift
        expect(order).to eq([:other, 1])
      end

      it 'serves a waiting shifter before a newcomer' do
        q = Queue.new
        first = spin { q.shift }
        snooze
        q << :a
        q << :b
        expect(q.shift).to eq(:b)
        expect(first.await).to eq(:a)
      end

      it 'keeps every item of a producer thread, in order' do
        q = Queue.new
        n = 100_000
        producer = Thread.new { n.times { |i| q << i } }
        got = Array.new(n) { q.shift }
        producer.join
        expect(got).to eq((0...n).to_a)
        expect(q).to be_empty
      end

      it 'keeps its items alive under GC.stress' do
        q = Queue.new(%w[a b])
        GC.stress = true
        begin
          20.times { |i| q << "item #{i}" }
          q.unshift(+'head')
          q.delete('a')
          consumer = spin { Array.new(22) { q.shift } }
          got = consumer.await
        ensure
          GC.stress = false
        end
        expect(got).to eq(['head', 'b', *Array.new(20) { |i| "item #{i}" }])
      end

      it 'works on an allocated queue that was never initialized' do
        q = Polyphony::Queue.allocate
        q << 1
        expect([q.shift, q.size, q.closed?]).to eq([1, 0, false])
      end

      it 'works for subclasses and with initial items' do
        sub = Class.new(Polyphony::Queue) { def twice = [shift, shift] }
        q = sub.new([1, 2, 3])
        expect(q.twice).to eq([1, 2])
        expect(q.size).to eq(1)
      end
    end
  end

  describe 'mailboxes' do
    it 'keeps per-sender order under load' do
      receiver = spin { 4000.times.map { Fiber.current.receive } }
      senders = 4.times.map { |s| spin { 1000.times { |i| receiver << [s, i]; snooze if (i % 7).zero? } } }
      Fiber.await(senders)
      msgs = receiver.await
      4.times { |s| expect(msgs.select { |m| m[0] == s }.map(&:last)).to eq((0...1000).to_a) }
    end

    it 'receives messages sent from other threads' do
      receiver = spin { 300.times.map { Fiber.current.receive } }
      threads = 3.times.map { |t| Thread.new { 100.times { |i| receiver << [t, i] } } }
      msgs = receiver.await
      threads.each(&:join)
      expect(msgs.size).to eq(300)
      3.times { |t| expect(msgs.select { |m| m[0] == t }.map(&:last)).to eq((0...100).to_a) }
    end

    it 'survives GC.stress with a queue shared between threads' do
      q = Queue.new
      GC.stress = true
      begin
        t = Thread.new { 20.times { |i| q << "item #{i}" } }
        got = 20.times.map { q.shift }
        t.join
      ensure
        GC.stress = false
      end
      expect(got).to eq(20.times.map { |i| "item #{i}" })
    end
  end

  describe 'Event' do
    it 'signals a value once, coalescing, and resets after await' do
      e = Polyphony::Event.new
      f = spin { e.await }
      snooze
      e.signal(:a)
      e.signal(:b)
      expect(f.await).to eq(:a)
      e.signal(:c)
      expect(e.await).to eq(:c)
    end

    it 'raises a scheduled exception in the waiter and returns a plain wake-up value' do
      e = Polyphony::Event.new
      f = spin { e.await }
      snooze
      f.schedule(IOError.new('woken'))
      expect { f.await }.to raise_error(IOError, 'woken')
      g = spin { e.await }
      snooze
      g.schedule(:plain)
      expect(g.await).to eq(:plain)
    end

    it 'refuses a second waiter and can be signalled from another thread' do
      e = Polyphony::Event.new
      f = spin { e.await }
      snooze
      expect { e.await }.to raise_error(RuntimeError, /already awaited/)
      Thread.new { e.signal(:t) }.join
      expect(f.await).to eq(:t)
    end
  end

  describe 'Mutex' do
    it 'serialises fibers, is re-entrant in synchronize and owned per fiber' do
      m = Mutex.new
      log = []
      fibers = 3.times.map do |i|
        spin { m.synchronize { log << i; sleep 0.001; m.synchronize { log << i } } }
      end
      Fiber.await(fibers)
      expect(log).to eq([0, 0, 1, 1, 2, 2])
      m.lock
      expect(m.owned?).to be(true)
      expect(m.locked?).to eq(Fiber.current)
      expect(spin { m.try_lock }.await).to be(false)
      expect { m.lock }.to raise_error(ThreadError)
      m.unlock
      expect { m.unlock }.to raise_error(ThreadError)
      expect(m.try_lock).to be(true)
      m.unlock
    end

    it 'releases and reacquires conditionally, as a condition variable does' do
      m = Mutex.new
      expect(m.conditional_release).to equal(m) # not held: nothing to do
      m.lock
      m.conditional_release
      expect(m.locked?).to be_nil
      other = spin { m.synchronize { :other_got_it } }
      expect(other.await).to eq(:other_got_it)
      holder = spin { m.synchronize { sleep 0.02 } }
      snooze
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      expect(m.conditional_reacquire).to equal(m)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be >= 0.01
      expect(m.owned?).to be(true)
      expect(holder).to be_dead
      expect(m.conditional_reacquire).to equal(m) # held already
      m.unlock
    end

    it 'releases the lock on stop and when the holder died' do
      m = Mutex.new
      f = spin { m.synchronize { sleep 1 } }
      snooze
      f.stop
      f.await
      expect(m.locked?).to be_nil
      g = spin { m.lock }
      g.await
      expect(m.try_lock).to be(true)
      m.unlock
    end

    it 'releases the lock when the block raises, and sleep returns the seconds slept' do
      m = Mutex.new
      expect { m.synchronize { raise IOError, 'in block' } }.to raise_error(IOError, 'in block')
      expect(m.locked?).to be_nil
      m.lock
      expect(m.sleep(0.01)).to be_a(Float).and be >= 0.005
      m.unlock
    end

    it 'lets 10,000 fibers contend without starvation, in FIFO order' do
      m = Mutex.new
      order = []
      fibers = 10_000.times.map { |i| spin { m.synchronize { snooze; order << i } } }
      Fiber.await(fibers)
      expect(order).to eq((0...10_000).to_a)
    end

    it 'sleeps unlocked and relocks' do
      m = Mutex.new
      m.lock
      other = spin { m.synchronize { :got } }
      slept = m.sleep(0.02)
      expect(slept).to be >= 0.015
      expect(m.owned?).to be(true)
      m.unlock
      expect(other.await).to eq(:got)
    end
  end

  describe 'ConditionVariable' do
    it 'waits until signalled, re-acquiring the mutex, or times out' do
      m = Mutex.new
      cv = ConditionVariable.new
      ready = false
      waiter = spin { m.synchronize { cv.wait(m) until ready; m.owned? } }
      snooze
      m.synchronize { ready = true; cv.signal }
      expect(waiter.await).to be(true)
      expect(m.synchronize { cv.wait(m, 0.01) }).to be(false)
      expect(cv.signal).to be_nil
    end

    it 're-acquires the mutex when the wait is interrupted, and signal returns the woken fiber' do
      m = Mutex.new
      cv = ConditionVariable.new
      f = spin do
        m.synchronize do
          cv.wait(m)
        rescue IOError
          m.owned?
        end
      end
      snooze
      f.raise(IOError)
      expect(f.await).to be(true)
      expect(m.locked?).to be_nil
      w = spin { m.synchronize { cv.wait(m) } }
      snooze
      expect(cv.signal).to eq(w)
      expect(w.await).to be(true)
    end

    it 'broadcasts to all waiters' do
      m = Mutex.new
      cv = ConditionVariable.new
      fibers = 3.times.map { spin { m.synchronize { cv.wait(m) } } }
      snooze
      cv.broadcast
      expect(Fiber.await(fibers)).to eq([true, true, true])
    end
  end

  describe 'Monitor' do
    it 'is re-entrant with a hold count and checks ownership' do
      mon = Monitor.new
      mon.enter
      mon.enter
      mon.exit
      expect(mon.mon_owned?).to be(true)
      mon.exit
      expect(mon.mon_locked?).to be(false)
      expect { mon.exit }.to raise_error(ThreadError)
      expect(mon.synchronize { mon.synchronize { :nested } }).to eq(:nested)
    end

    it 'checks the owner with the contract message and has the mon_* aliases' do
      mon = Monitor.new
      expect { mon.mon_check_owner }.to raise_error(ThreadError, 'current fiber not owner')
      mon.mon_enter
      expect(mon.try_mon_enter).to be(true)
      expect { spin { mon.mon_exit }.await }.to raise_error(ThreadError)
      2.times { mon.mon_exit }
      expect(mon.mon_locked?).to be(false)
      expect(mon.mon_synchronize { mon.mon_owned? }).to be(true)
    end

    it 'try_enter succeeds for the owner and fails for another fiber' do
      mon = Monitor.new
      expect(mon.try_enter).to be(true)
      expect(mon.try_enter).to be(true)
      expect(spin { mon.try_enter }.await).to be(false)
      2.times { mon.exit }
      expect(spin { mon.try_enter && mon.exit && :ok }.await).to eq(:ok)
    end

    it 'supports new_cond (MonitorMixin::ConditionVariable)' do
      mon = Monitor.new
      cond = mon.new_cond
      items = []
      consumer = spin { mon.synchronize { cond.wait_while { items.empty? }; items.shift } }
      snooze
      mon.synchronize { items << :x; cond.signal }
      expect(consumer.await).to eq(:x)
    end
  end

  describe 'ResourcePool' do
    it 'allocates a new resource for a fiber instead of waiting for the one another fiber is taking' do
      n = 0
      pool = Polyphony::ResourcePool.new(limit: 3) { n += 1 }
      pool.acquire { nil } # one resource in stock
      used = []
      fibers = 3.times.map { spin { pool.acquire { |r| used << r; sleep 0.05 } } }
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Fiber.await(fibers)
      expect(used.sort).to eq([1, 2, 3])
      expect(pool.size).to eq(3)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0).to be < 0.14
    end

    it 'allocates lazily up to the limit and shares resources FIFO' do
      n = 0
      pool = Polyphony::ResourcePool.new(limit: 2) { n += 1 }
      used = []
      fibers = 4.times.map { spin { pool.acquire { |r| used << r; sleep 0.01 } } }
      Fiber.await(fibers)
      expect(n).to eq(2)
      expect(used.sort).to eq([1, 1, 2, 2])
      expect(pool.size).to eq(2)
      expect(pool.available).to eq(2)
    end

    it 'is re-entrant per fiber, discards and fills' do
      pool = Polyphony::ResourcePool.new(limit: 3) { +'r' }
      pool.acquire { |a| pool.acquire { |b| expect(b).to equal(a) } }
      pool.acquire { pool.discard! }
      expect(pool.size).to eq(0)
      pool.fill!
      expect(pool.size).to eq(3)
      expect(pool.upcase).to eq('R')
      expect(pool.respond_to?(:anything)).to be(true)
    end

    it 'returns the resource when the block raises and delegates other methods' do
      pool = Polyphony::ResourcePool.new(limit: 1) { [] }
      expect { pool.acquire { |r| r << 1; raise IOError } }.to raise_error(IOError)
      expect([pool.size, pool.available, pool.limit]).to eq([1, 1, 1])
      pool << 2
      expect(pool.acquire(&:dup)).to eq([1, 2])
    end

    it 'propagates allocator errors and rejects bad arguments' do
      pool = Polyphony::ResourcePool.new(limit: 1) { raise IOError, 'no' }
      expect { pool.acquire { } }.to raise_error(IOError)
      expect(pool.size).to eq(0)
      expect { Polyphony::ResourcePool.new(limit: 0) { } }.to raise_error(ArgumentError)
      expect { Polyphony::ResourcePool.new }.to raise_error(ArgumentError)
    end
  end

  describe 'Throttler' do
    it 'performs 24 to 26 ops in 0.5 s at 50 ops/s' do
      t = Polyphony::Throttler.new(50)
      n = 0
      move_on_after(0.5) { loop { t.call { n += 1 } } }
      expect(n).to be_between(24, 26)
    end

    it 'runs the first call at once and skips missed slots instead of bursting' do
      t = Polyphony::Throttler.new(rate: 20)
      t0 = monotonic
      times = []
      t.call { times << (monotonic - t0) }
      sleep 0.12
      2.times { t.call { times << (monotonic - t0) } }
      expect(times[0]).to be < 0.02
      expect(times[2] - times[1]).to be >= 0.02
    end

    it 'rejects invalid rates' do
      # ArgumentError, not Polyphony's RuntimeError (docs/differences.md).
      expect { Polyphony::Throttler.new(0) }.to raise_error(ArgumentError, /Invalid rate/)
      expect { Polyphony::Throttler.new(nil) }.to raise_error(ArgumentError, /Invalid rate/)
      expect(Polyphony::Throttler.new(interval: 0.5).interval).to eq(0.5)
    end
  end

  describe 'Timer' do
    it 'sleeps, times out and moves on at tick granularity' do
      timer = Polyphony::Timer.new(resolution: 0.01)
      t = monotonic
      timer.sleep(0.03)
      expect(monotonic - t).to be_between(0.02, 0.2)
      expect { timer.cancel_after(0.02) { sleep 1 } }.to raise_error(Polyphony::Cancel)
      expect(timer.move_on_after(0.02, with_value: :m) { sleep 1 }).to eq(:m)
      expect(timer.after(0.01) { :a }.await).to eq(:a)
      timer.stop
    end

    it 'runs every on the tick grid' do
      timer = Polyphony::Timer.new(resolution: 0.005)
      n = 0
      timer.move_on_after(0.1) { timer.every(0.02) { n += 1 } }
      expect(n).to be_between(3, 5)
      timer.stop
    end

    it 'resets the current timeout' do
      timer = Polyphony::Timer.new(resolution: 0.01)
      r = timer.move_on_after(0.05, with_value: :late) do
        3.times { sleep 0.03; timer.reset }
        :done
      end
      expect(r).to eq(:done)
      timer.stop
    end
  end

  describe 'ThreadPool' do
    it 'runs blocks on worker threads while other fibers run' do
      pool = Polyphony::ThreadPool.new(2)
      ticks = 0
      ticker = spin_loop { ticks += 1; sleep 0.005 }
      r = pool.process { Kernel.orig_sleep(0.05) if Kernel.respond_to?(:orig_sleep); Thread.current }
      expect(r).not_to eq(Thread.current)
      expect { pool.process { raise IOError, 'w' } }.to raise_error(IOError, 'w')
      expect(ticks).to be >= 1
      ticker.stop
      expect(pool.size).to eq(2)
      pool.stop
    end

    it 'reports busy? while tasks wait for a worker' do
      pool = Polyphony::ThreadPool.new(1)
      gate = Queue.new
      pool.cast { gate.shift }
      pool.cast { :queued }
      sleep 0.01
      expect(pool.busy?).to be(true)
      gate << :go
      sleep 0.01
      expect(pool.busy?).to be(false)
      pool.stop
    end

    it 'loses the worker whose cast block raised, and keeps serving with the others' do
      pool = Polyphony::ThreadPool.new(2)
      pool.cast { Thread.current.report_on_exception = false; raise 'cast failure' }
      sleep 0.02
      expect(pool.instance_variable_get(:@threads).count(&:alive?)).to eq(1)
      expect(pool.process { :still_served }).to eq(:still_served)
      pool.stop
    end

    it 'casts, has a default pool, and rejects bad sizes' do
      q = Queue.new
      pool = Polyphony::ThreadPool.new(1)
      pool.cast { q << :cast }
      expect(q.shift).to eq(:cast)
      pool.stop
      expect(Polyphony::ThreadPool.process { 1 + 1 }).to eq(2)
      Polyphony::ThreadPool.reset
      expect { Polyphony::ThreadPool.new(0) }.to raise_error(ArgumentError)
    end
  end

  describe 'Channel' do
    it 'stops waiting receivers when closed' do
      require 'polyphony/core/channel'
      ch = Polyphony::Channel.new
      r = spin { ch.receive }
      snooze
      ch.close
      expect(r.await).to be_nil
      expect(r.dead?).to be(true)
    end
  end
end
