# frozen_string_literal: true

RSpec.describe 'Scheduling' do
  it 'does not run a spun fiber before the spinner reaches a switchpoint' do
    ran = false
    f = spin { ran = true }
    expect(ran).to be(false)
    expect(f.state).to eq(:runnable)
    snooze
    expect(ran).to be(true)
  end

  it 'interleaves snoozing fibers round-robin' do
    out = []
    fibers = 3.times.map { |i| spin { 3.times { out << i; snooze } } }
    Fiber.await(fibers)
    expect(out).to eq([0, 1, 2, 0, 1, 2, 0, 1, 2])
  end

  it 'makes a plain re-schedule replace the queued value' do
    f = spin { suspend }
    snooze
    f.schedule(:a)
    f.schedule(:b)
    expect(f.await).to eq(:b)
  end

  it 'keeps a queued exception against a later plain value' do
    f = spin { suspend }
    snooze
    f.schedule(RuntimeError.new('boom'))
    f.schedule(:v)
    expect { f.await }.to raise_error(RuntimeError, 'boom')
  end

  it 'puts a priority-scheduled fiber at the head of the queue' do
    out = []
    a = spin { out << :a }
    b = spin { out << :b }
    b.schedule_with_priority(nil)
    Fiber.await(a, b)
    expect(out).to eq(%i[b a])
  end

  it 'returns nil from suspend when nothing is runnable and nothing waits on the kernel' do
    spin { suspend }
    expect(suspend).to be_nil
  end

  it 'keeps suspend blocking while a fiber sleeps (its timer counts)' do
    f = spin { sleep 0.05; Fiber.current.parent.schedule(:woke) }
    expect(suspend).to eq(:woke)
    f.await
  end

  it 'ignores scheduling of a dead fiber' do
    f = spin { :done }
    f.await
    expect(f.schedule(:x)).to eq(f)
    expect(backend.runnable?(f)).to be(false)
  end

  it 'raises TypeError when scheduling a non-fiber' do
    expect { backend.schedule(:nope) }.to raise_error(TypeError)
    expect { backend.schedule }.to raise_error(ArgumentError)
  end

  it 'wakes a sleeping fiber early with a value' do
    f = spin { sleep 1 }
    snooze
    t = monotonic
    f.schedule(:woken)
    expect(f.await).to eq(:woken)
    expect(monotonic - t).to be < 0.5
  end

  it 'resumes a fiber whose timer expired ahead of the fibers already runnable' do
    order = []
    sleeper = spin do
      sleep 0.001
      order << :timer
    end
    busy = 300.times.map do |i|
      spin do
        t = monotonic
        nil until monotonic - t > 0.0001
        order << i
      end
    end
    Fiber.await(sleeper, *busy)
    # In FIFO order the timer would wait behind all 300 (30 ms of work).
    expect(order.index(:timer)).to be < 150
  end

  it 'keeps an exception scheduled into a sleeping fiber when its timer then expires' do
    f = spin { sleep 0.001 }
    snooze
    f.schedule(RuntimeError.new('first'))
    t = monotonic
    nil until monotonic - t > 0.005
    expect { f.await }.to raise_error(RuntimeError, 'first')
  end

  it 'treats sleep 0 as a switchpoint and negative sleep as immediate' do
    out = []
    spin { out << :other }
    sleep 0
    expect(out).to eq([:other])
    expect(sleep(-1)).to be_nil
  end

  it 'lets a runnable fiber run at every sleep 0, also when timers are harvested' do
    # Expired timers are queued at the head, but a timer due when it was set
    # is a snooze: it must not overtake the fibers already runnable. Timers
    # are harvested every 64 fibers picked, so 500 rounds hit that.
    sleepers = []
    missed = 500.times.count do
      out = []
      spin { out << :other }
      sleepers << spin { sleep 0.0001 }
      sleep 0
      out.empty?
    end
    Fiber.await(sleepers)
    expect(missed).to eq(0)
  end

  it 'raises TypeError for a non-numeric sleep' do
    expect { sleep('1') }.to raise_error(TypeError, /no implicit conversion to float from string/)
  end

  it 'runs the idle proc when the run queue empties' do
    count = 0
    backend.idle_proc = proc { count += 1 }
    sleep 0.01
    expect(count).to be >= 1
  end

  it 'runs GC when idle with idle_gc_period, then disables GC (differences.md: idle GC)' do
    backend.idle_gc_period = 0.01
    before = GC.count
    3.times { sleep 0.02 }
    expect(GC.count).to be > before
    expect(GC.enable).to be(true) # true: GC was disabled
  ensure
    backend.idle_gc_period = 0
    GC.enable
  end

  it 'rejects a non-numeric idle_gc_period' do
    expect { backend.idle_gc_period = 'x' }.to raise_error(TypeError)
  end

  it 'reports stats and resets the counters' do
    3.times { snooze }
    s = backend.stats
    expect(s.keys).to include(:runqueue_length, :switch_count, :op_count, :poll_count, :pending_ops)
    expect(s[:switch_count]).to be >= 3
    expect(backend.stats[:switch_count]).to be < 3
  end

  it 'adopts an Enumerator fiber that reaches a switchpoint' do
    e = Enumerator.new do |y|
      3.times do |i|
        sleep 0.001
        y << i
      end
    end
    other = spin { 3.times { snooze } }
    expect([e.next, e.next, e.next]).to eq([0, 1, 2])
    other.await
  end

  it 'handles an Enumerator doing I/O inside a spun fiber' do
    r, w = IO.pipe
    e = Enumerator.new { |y| 2.times { y << backend.read(r, +'', 3, true, 0) } }
    writer = spin { backend.write(w, 'abcdef') }
    reader = spin { [e.next, e.next] }
    expect(reader.await).to eq(%w[abc def])
    writer.await
  ensure
    r&.close
    w&.close
  end
end
