# frozen_string_literal: true

RSpec.describe 'Threads' do
  it 'gives every thread its own backend and main fiber, running its own fibers' do
    th = Thread.new do
      fibers = 3.times.map { |i| spin { sleep 0.01; i } }
      [Thread.current.backend, Fiber.current, Thread.current.main_fiber, Fiber.await(fibers)]
    end
    backend, fiber, main, results = th.value
    expect(backend).not_to equal(Thread.current.backend)
    expect(fiber).to equal(main)
    expect(main.main?).to be(true)
    expect(results).to eq([0, 1, 2])
  end

  it 'joins with the block value, parking only the calling fiber' do
    th = Thread.new { sleep 0.1; :value }
    value, ticks = with_ticker(0.01) { th.join }
    expect(value).to eq(:value)
    expect(ticks).to be >= 5
    expect(th.value).to eq(:value)
    expect(th.await).to eq(:value)
    expect(th.alive?).to be(false)
  end

  it 'captures an uncaught exception and raises it from join and value, also once finished' do
    th = Thread.new { raise IOError, 'in thread' }
    expect { th.join }.to raise_error(IOError, 'in thread')
    expect(th.status).to be(false)
    expect { th.join }.to raise_error(IOError, 'in thread')
    expect { th.value }.to raise_error(IOError, 'in thread')
    expect(th.result).to be_a(IOError)
  end

  it 'prints no report for a thread that fails' do
    out, err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      th = Thread.new { raise 'quiet' }
      sleep 0.05
      p th.status
      begin
        th.value
      rescue => e
        p e.message
      end
    RUBY
    expect(err).to eq('')
    expect(out).to eq("false\n\"quiet\"\n")
    expect(status.success?).to be(true)
  end

  it 'returns nil from join when the timeout expires, leaving the thread running' do
    th = Thread.new { sleep 0.2; :late }
    expect(th.join(0.02)).to be_nil
    expect(th.alive?).to be(true)
    expect(th.join(0)).to be_nil
    expect(th.join(2)).to equal(th) # with a limit: the thread, as stdlib (docs/differences.md)
    expect(th.join).to eq(:late)
  end

  it 'tells a timeout from a thread that returned nil when joined with a limit' do
    nil_thread = Thread.new { sleep 0.01; nil }
    expect(nil_thread.join(2)).to equal(nil_thread)
    expect(nil_thread.join(2) || :timed_out).to equal(nil_thread)
    expect(nil_thread.join).to be_nil
    slow = Thread.new { sleep 0.3 }
    expect(slow.join(0.01) || :timed_out).to eq(:timed_out)
    slow.kill
  end

  it 'raises ThreadError when a thread joins itself' do
    th = Thread.new { Thread.current.join }
    expect { th.value }.to raise_error(ThreadError)
  end

  it 'kills through the main fiber: the fiber tree unwinds and the result is nil' do
    log = Queue.new
    th = Thread.new do
      spin do
        sleep
      ensure
        log << :child_ensure
      end
      begin
        sleep
      ensure
        log << :main_ensure
      end
    end
    sleep 0.02
    expect(th.kill).to equal(th)
    expect(th.join).to be_nil
    expect([log.shift, log.shift].sort).to eq(%i[child_ensure main_ensure])
    expect(th.status).to be(false)
    expect(th.kill).to equal(th)
  end

  it 'raises in the main fiber of the thread and returns that fiber' do
    th = Thread.new do
      sleep 1
    rescue IOError => e
      "rescued #{e.message}"
    end
    sleep 0.02
    expect(th.raise(IOError, 'from outside')).to equal(th.main_fiber)
    expect(th.value).to eq('rescued from outside')
    inside = Thread.new do
      Thread.current.raise(ArgumentError, 'inside')
    rescue ArgumentError => e
      e.message
    end
    expect(inside.value).to eq('inside')
  end

  it 'delivers messages to the main fiber of a thread, in order' do
    th = Thread.new { 3.times.map { Fiber.current.receive } }
    expect(th << :a).to equal(th.main_fiber)
    th.send(:b) << :c
    expect(th.value).to eq(%i[a b c])
  end

  it 'makes Thread.start and Thread.fork behave like Thread.new' do
    th = Thread.start(2) { |x| spin { x * 21 }.await }
    expect(th.value).to eq(42)
    expect(Thread.fork { Thread.current.main_fiber.main? }.value).to be(true)
    expect { Thread.new }.to raise_error(ThreadError)
  end

  it 'shows the block location in inspect' do
    th = Thread.new { :x }
    th.join
    expect(th.location).to eq("#{__FILE__}:#{__LINE__ - 2}")
    expect(th.inspect).to match(/\A#<Thread:0x\h+ #{Regexp.escape(__FILE__)}:\d+ dead>\z/)
  end

  it 'runs several threads exchanging messages between their fibers without hanging' do
    out, err, status = run_ruby(<<~RUBY, timeout: 20)
      require 'polyphony'
      ring = 4.times.map do
        Thread.new do
          workers = 3.times.map { spin { receive } }
          sum = 0
          100.times do
            sum += Fiber.current.receive
          end
          workers.each { |w| w << :done }
          Fiber.await(workers)
          sum
        end
      end
      sleep 0.02
      senders = ring.map.with_index do |th, i|
        Thread.new { 100.times { |j| th << j; sleep 0 if j % 10 == i } }
      end
      senders.each(&:join)
      p ring.map(&:value)
    RUBY
    expect(err).to eq('')
    expect(out).to eq("[4950, 4950, 4950, 4950]\n")
    expect(status.success?).to be(true)
  end

  it 'survives GC.stress while threads are joined, killed and sent messages' do
    GC.stress = true
    begin
      a = Thread.new { spin { sleep 0.001; :child }.await }
      b = Thread.new { Fiber.current.receive }
      c = Thread.new { sleep 10 }
      b << 'message'
      sleep 0.01
      c.kill
      results = [a.value, b.value, c.join]
    ensure
      GC.stress = false
    end
    expect(results).to eq([:child, 'message', nil])
  end

  it "delivers a message sent while the thread's first receive is creating its mailbox" do
    # The receiving thread and the sender both create the mailbox lazily;
    # under GC.stress the GVL changes hands inside `Queue.new`, and a second
    # mailbox used to replace the first one, losing the message (a hang).
    out, err, status = run_ruby(<<~RUBY, timeout: 60)
      require 'polyphony'
      GC.stress = true
      got = 8.times.map do |i|
        t = Thread.new { Fiber.current.receive }
        t << i
        t.value
      end
      GC.stress = false
      p got
    RUBY
    expect([out, err]).to eq(["[0, 1, 2, 3, 4, 5, 6, 7]\n", ''])
    expect(status.success?).to be(true)
  end

  it 'wakes fibers blocked in another thread promptly on a Queue push' do
    q = Queue.new
    th = Thread.new { 10.times.map { q.shift } }
    sleep 0.02
    t0 = monotonic
    10.times { |i| q << i }
    expect(th.value).to eq((0..9).to_a)
    expect(monotonic - t0).to be < 1
  end
end

RSpec.describe 'Thread: replacing the backend and the P2 helpers' do
  it 'takes a new backend with backend= (a test helper giving each test a fresh backend)' do
    out, err, status = run_ruby(<<~RUBY)
      require 'polyphony'
      f = spin { sleep 0.01; :first }
      p f.await
      old = Thread.current.backend
      Thread.current.backend.finalize
      Thread.current.backend = Polyphony::Backend.new
      p Thread.current.backend.equal?(old)
      p spin { sleep 0.01; :second }.await
      # Not finalized first: backend= finalizes the one it replaces.
      mid = Thread.current.backend
      Thread.current.backend = Polyphony::Backend.new
      begin
        mid.sleep(0.01)
      rescue IOError => e
        p e.class
      end
      r, w = IO.pipe
      spin { w << 'through the new backend'; w.close }
      p r.read
    RUBY
    expect(err).to eq('')
    expect(status).to be_success
    expect(out).to eq(":first\nfalse\n:second\nIOError\n\"through the new backend\"\n")
  end

  it 'refuses a backend of another thread, another thread, and anything but a backend' do
    other = Thread.new { Polyphony::Backend.new }.value
    expect { Thread.current.backend = other }.to raise_error(ThreadError)
    expect { Thread.new { sleep 0.05 }.tap { |t| t.backend = Polyphony::Backend.new }.join }
      .to raise_error(ThreadError)
    expect { Thread.current.backend = :nope }.to raise_error(TypeError)
    expect { Thread.current.backend = nil }.to raise_error(TypeError)
    expect(Thread.current.backend.kind).to be_a(Symbol)
  end

  it 'says when it is done, and can be awaited and marked done' do
    t = Thread.new { sleep 0.02; :v }
    expect(t.done?).to be(false)
    expect(t.await_done).to be(true)
    expect(t.done?).to be(true)
    expect(t.value).to eq(:v)
    expect(Thread.current.setup).to equal(Thread.current)
    out, err, = run_ruby("require 'polyphony'; Thread.current.debug!; spin { :traced }.await")
    expect(err).to eq('')
    expect(out).to include('[:spin, #<Fiber', '[:terminate, #<Fiber', ':traced]')
  end

  it 'unschedules, switches and schedules with a wake-up' do
    order = []
    f = spin { order << suspend }
    snooze
    f.schedule(:late)
    expect(Thread.current.fiber_unschedule(f)).to equal(f)
    expect(backend.runnable?(f)).to be(false)
    Thread.current.schedule_and_wakeup(f, :now)
    expect(order).to eq([:now])
    expect { Thread.new { sleep 0.05 }.tap { |_t| sleep 0.01 }.switch_fiber }.to raise_error(ThreadError)
  end

  it 'has the stock methods under their orig_ names' do
    expect(Kernel.instance_method(:orig_sleep)).to eq(Kernel.instance_method(:sleep))
    expect(Kernel.instance_method(:orig_p)).to eq(Kernel.instance_method(:p))
    expect(IO.method(:orig_popen).unbind).to eq(IO.method(:popen).unbind)
    expect(orig_sleep(0)).to eq(0)
  end
end
