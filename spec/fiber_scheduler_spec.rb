# frozen_string_literal: true

require 'polyphony/adapters/postgres'
require 'polyphony/adapters/redis'

require 'tempfile'
require 'tmpdir'

RSpec.describe 'Fiber::Scheduler on the backend' do
  describe 'the scheduler' do
    it 'is installed for every thread and set inside spun fibers' do
      expect(Fiber.scheduler).to be_a(Polyphony::FiberScheduler)
      expect(spin { [Fiber.scheduler, Fiber.current.blocking?] }.await).to eq([Fiber.scheduler, false])
      other = Thread.new { spin { Fiber.scheduler }.await }.value
      expect(other).to be_a(Polyphony::FiberScheduler)
      expect(other).not_to equal(Fiber.scheduler)
    end

    it 'makes Fiber.schedule spin a child of the current fiber' do
      f = Fiber.schedule { :scheduled }
      expect(f.parent).to equal(Fiber.current)
      expect(f.await).to eq(:scheduled)
      expect { Fiber.scheduler.fiber }.to raise_error(ArgumentError)
    end

    it 'lets other fibers run while a spun fiber waits in Thread::SizedQueue#pop' do
      q = Thread::SizedQueue.new(1)
      value, ticks = with_ticker(0.005) do
        f = spin { q.pop }
        spin { sleep 0.05; q << :item }
        f.await
      end
      expect(value).to eq(:item)
      expect(ticks).to be >= 5
    end

    it 'lets other fibers run while a spun fiber is in stock Thread#join, Process.wait or Mutex#lock' do
      th = Thread.new { sleep 0.05; :thread }
      value, ticks = with_ticker(0.005) { spin { th.orig_join.orig_value }.await }
      expect([value, ticks >= 5]).to eq([:thread, true])

      pid = Process.spawn('sleep 0.05; exit 3')
      status, ticks = with_ticker(0.005) { spin { Process::Status.wait(pid) }.await }
      expect([status.exitstatus, ticks >= 5]).to eq([3, true])

      lock = Polyphony::CoreMutex.new
      holder = Thread.new { lock.synchronize { Kernel.orig_sleep(0.05) } } if Kernel.respond_to?(:orig_sleep)
      holder ||= Thread.new { lock.synchronize { Thread.current.backend.sleep(0.05) } }
      Thread.pass until lock.locked?
      value, ticks = with_ticker(0.005) { spin { lock.synchronize { :locked } }.await }
      expect([value, ticks >= 5]).to eq([:locked, true])
      holder.join
    end

    it 'waits on IO, sleeps and blocks with timeouts through the hooks' do
      r, w = IO.pipe
      scheduler = Fiber.scheduler
      expect(spin { scheduler.io_wait(r, IO::READABLE, 0.01) }.await).to be(false)
      w << 'x'
      expect(spin { scheduler.io_wait(r, IO::READABLE, nil) }.await).to eq(IO::READABLE)
      expect(spin { scheduler.io_wait(w, IO::WRITABLE, 1) }.await).to eq(IO::WRITABLE)
      expect(spin { scheduler.block(:blocker, 0.01) }.await).to be(false)
      f = spin { scheduler.block(:blocker) }
      snooze
      Thread.new { scheduler.unblock(:blocker, f) }.join
      expect(f.await).to be(true)
      t0 = monotonic
      spin { scheduler.kernel_sleep(0.02) }.await
      expect(monotonic - t0).to be >= 0.015
      expect { scheduler.io_wait(r, 'x', nil) }.to raise_error(TypeError)
      expect { scheduler.kernel_sleep('x') }.to raise_error(TypeError)
    end

    it 'survives GC.stress through the hooks, across threads' do
      q = Thread::SizedQueue.new(2)
      r, w = IO.pipe
      GC.stress = true
      begin
        producer = Thread.new { 3.times { |i| q << "item #{i}" } }
        got = spin { 3.times.map { q.pop } }
        waiter = spin { Fiber.scheduler.io_wait(r, IO::READABLE, 1) }
        spin { w << 'x' }
        slept = spin { Fiber.scheduler.kernel_sleep(0.001); :slept }
        results = [got.await, waiter.await, slept.await, producer.value]
      ensure
        GC.stress = false
      end
      expect(results[0]).to eq(['item 0', 'item 1', 'item 2'])
      expect(results[1..2]).to eq([IO::READABLE, :slept])
    end

    it 'reads a regular file and a pipe through io_read under GC.stress' do
      Warning[:experimental] = false
      r, w = IO.pipe
      File.open(__FILE__) do |f|
        expected = File.binread(__FILE__, 64)
        GC.stress = true
        begin
          from_file = spin do
            buf = IO::Buffer.new(64)
            [Fiber.scheduler.io_read(f, buf, 64), buf.get_string]
          end
          from_pipe = spin do
            buf = IO::Buffer.new(4)
            [Fiber.scheduler.io_read(r, buf, 4), buf.get_string]
          end
          spin { w << 'pipe' }
          results = [from_file.await, from_pipe.await]
        ensure
          GC.stress = false
        end
        expect(results).to eq([[64, expected], [4, 'pipe']])
      end
    ensure
      Warning[:experimental] = true
      [r, w].each { |io| io&.close }
    end

    it 'reads and writes through IO::Buffer in io_read and io_write' do
      r, w = IO.pipe
      scheduler = Fiber.scheduler
      Warning[:experimental] = false
      out = IO::Buffer.new(5)
      out.set_string('hello')
      expect(spin { scheduler.io_write(w, out, 5) }.await).to eq(5)
      buf = IO::Buffer.new(10)
      expect(spin { scheduler.io_read(r, buf, 5) }.await).to eq(5)
      expect(buf.get_string(0, 5)).to eq('hello')
      w.close
      expect(spin { scheduler.io_read(r, buf, 1) }.await).to eq(0)
      r.close
      expect { spin { scheduler.io_read(r, buf, 1) }.await }.to raise_error(IOError)
    ensure
      Warning[:experimental] = true
    end

    it "has the running Ruby's hooks: io_select, io_pread from 3.2, blocking_operation_wait from 3.4, no io_pwrite" do
      hooks = %i[io_select io_pread blocking_operation_wait io_pwrite].map do |m|
        Polyphony::FiberScheduler.method_defined?(m)
      end
      expect(hooks).to eq([RUBY_VERSION >= '3.2', RUBY_VERSION >= '3.2', RUBY_VERSION >= '3.4', false])
    end

    it 'reads and writes a file at an offset in a spun fiber (reads through io_pread on Ruby >= 3.3)' do
      calls = []
      scheduler = Fiber.scheduler
      if RUBY_VERSION >= '3.3'
        %i[io_pread].each do |hook|
          allow(scheduler).to receive(hook).and_wrap_original do |m, *args|
            calls << hook
            m.call(*args)
          end
        end
      end
      Tempfile.create('pread') do |f|
        f.write('hello world')
        f.flush
        got = spin do
          [f.pread(5, 6), f.pwrite('HELLO', 0), f.pread(100, 0), (f.pread(1, 11) rescue $!.class), f.pos] # rubocop:disable Style/RescueModifier
        end.await
        expect(got).to eq(['world', 5, 'HELLO world', EOFError, 11])
      end
      r, w = IO.pipe
      expect { spin { r.pread(1, 0) }.await }.to raise_error(Errno::ESPIPE)
      expect(calls.uniq).to eq(RUBY_VERSION >= '3.3' ? %i[io_pread] : [])
      # The thread still schedules its fibers (Ruby 3.3 once ran a pwrite
      # hook without the GVL here, and the thread hung a little later).
      spin { sleep 0.02; w << 'z' }
      expect(spin { r.readpartial(1) }.await).to eq('z')
    ensure
      [r, w].each { |io| io&.close }
    end

    if RUBY_VERSION >= '3.2'
      it "parks only the fiber in Ruby's own IO.select (through io_select)" do
        r, w = IO.pipe
        ticks = 0
        spin { loop { ticks += 1; sleep 0.01 } }
        spin { sleep 0.1; w << 'x' }
        expect(spin { IO.orig_select([r], nil, nil, 5) }.await).to eq([[r], [], []])
        expect(ticks).to be >= 3
        buf = IO::Buffer.new(4)
        Warning[:experimental] = false
        f = File.open(__FILE__)
        expect(spin { Fiber.scheduler.io_pread(f, buf, 2, 4, 0) }.await).to eq(4)
        expect(buf.get_string).to eq(File.binread(__FILE__, 4, 2))
      ensure
        Warning[:experimental] = true
        [r, w, f].each { |io| io&.close }
      end
    end

    it 'lets two fibers reach a constant being autoloaded (require reads files without a switch)' do
      Dir.mktmpdir do |dir|
        path = File.join(dir, 'polyphony_autoloaded.rb')
        # Big enough to take several reads of Ruby's 8 KiB buffer.
        File.write(path, "module PolyphonyAutoloaded\n#{(1..3000).map { |i| "  X#{i} = #{i}\n" }.join}end\n")
        Object.autoload(:PolyphonyAutoloaded, path)
        ticks = 0
        ticker = spin { loop { ticks += 1; snooze } }
        got = Fiber.await(spin { PolyphonyAutoloaded::X1 }, spin { PolyphonyAutoloaded::X3000 })
        expect(got).to eq([1, 3000])
        ticker.stop
        # A pipe is still read through the backend, parking only its fiber.
        r, w = IO.pipe
        spin { sleep 0.05; w << 'late' }
        buf = IO::Buffer.new(4)
        Warning[:experimental] = false
        expect(spin { Fiber.scheduler.io_read(r, buf, 4) }.await).to eq(4)
        expect(buf.get_string).to eq('late')
      ensure
        Warning[:experimental] = true
        [r, w].each { |io| io&.close }
        Object.send(:remove_const, :PolyphonyAutoloaded) if Object.const_defined?(:PolyphonyAutoloaded, false)
      end
    end

    it 'resolves addresses, waits for processes and times out through the hooks' do
      scheduler = Fiber.scheduler
      expect(spin { scheduler.address_resolve('localhost%eth0') }.await).to include('127.0.0.1')
      pid = Process.spawn('exit 4')
      expect(spin { scheduler.process_wait(pid, 0) }.await.exitstatus).to eq(4)
      expect do
        spin { scheduler.timeout_after(0.01, IOError, 'late') { sleep 1 } }.await
      end.to raise_error(IOError, 'late')
      expect(spin { scheduler.timeout_after(1, IOError, 'late') { :in_time } }.await).to eq(:in_time)
    end
  end

  describe 'PostgreSQL (pg, no adapter needed)' do
    let(:params) { TestServers.postgres }

    it 'runs 20 pg_sleep(0.3) queries on 20 connections concurrently' do
      conns = 20.times.map { PG.connect(**params) }
      t0 = monotonic
      results, ticks = with_ticker(0.01) do
        Fiber.await(conns.map { |c| spin { c.exec('SELECT pg_sleep(0.3), 1 AS one').getvalue(0, 1) } })
      end
      elapsed = monotonic - t0
      expect(results).to eq(['1'] * 20)
      expect(elapsed).to be_between(0.28, 1.5)
      expect(ticks).to be >= 20
    ensure
      conns&.each(&:close)
    end

    it 'serves 50 pg_sleep(0.1) queries from a pool of 5 connections in about 1 s' do
      created = 0
      pool = Polyphony::ResourcePool.new(limit: 5) { created += 1; PG.connect(**params) }
      busy = 0
      peak = 0
      t0 = monotonic
      Fiber.await(50.times.map do
        spin do
          pool.acquire do |conn|
            busy += 1
            peak = [peak, busy].max
            conn.exec('SELECT pg_sleep(0.1)')
          ensure
            busy -= 1
          end
        end
      end)
      expect(monotonic - t0).to be_between(0.95, 2.5)
      expect([created, peak]).to eq([5, 5])
    ensure
      5.times { pool&.acquire { |c| c.close; pool.discard! } } if pool&.size&.positive?
    end

    it 'connects from many fibers at once and reports query errors in the calling fiber' do
      conns = Fiber.await(10.times.map { spin { PG.connect(**params) } })
      expect(conns.map { |c| c.exec('SELECT 1').getvalue(0, 0) }).to eq(['1'] * 10)
      bad = spin { conns[0].exec('SELECT no_such_column') }
      ok = spin { conns[1].exec('SELECT 2').getvalue(0, 0) }
      expect { bad.await }.to raise_error(PG::UndefinedColumn)
      expect(ok.await).to eq('2')
    ensure
      conns&.each(&:close)
    end
  end

  describe 'Redis (redis gem, no adapter needed)' do
    let(:host_port) { TestServers.redis }

    def redis
      Redis.new(host: host_port[0], port: host_port[1])
    end

    it 'releases 100 fibers blocked in BLPOP on separate connections when another fiber pushes' do
      key = "polyphony-#{Process.pid}-#{rand(1 << 30)}"
      clients = 100.times.map { redis }
      waiters = clients.map { |c| spin { c.blpop(key, timeout: 5) } }
      sleep 0.1
      expect(waiters.map(&:state).uniq).to eq([:waiting])
      pusher = redis
      value, ticks = with_ticker(0.005) do
        # The ticker must tick while the 100 fibers are parked in BLPOP (the
        # pushes alone can finish within one tick on a fast machine).
        spin do
          sleep 0.02
          100.times { |i| pusher.rpush(key, "v#{i}") }
        end.await
        Fiber.await(waiters)
      end
      expect(value.map(&:last).sort).to eq(100.times.map { |i| "v#{i}" }.sort)
      expect(ticks).to be >= 1
    ensure
      clients&.each(&:close)
      pusher&.close
    end

    it 'runs commands from many fibers on separate connections' do
      key = "polyphony-counter-#{Process.pid}"
      clients = 10.times.map { redis }
      Fiber.await(clients.map { |c| spin { 100.times { c.incr(key) } } })
      expect(clients[0].get(key)).to eq('1000')
      clients[0].del(key)
    ensure
      clients&.each(&:close)
    end
  end
end
