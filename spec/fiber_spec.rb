# frozen_string_literal: true

RSpec.describe 'Fiber API and structured concurrency' do
  describe 'tree' do
    it 'records parent and children in spin order' do
      a = spin { sleep }
      b = spin { sleep }
      expect(a.parent).to eq(Fiber.current)
      expect(Fiber.current.children).to eq([a, b])
    end

    it 'spins a child of another fiber with Fiber#spin' do
      parent = spin { sleep }
      child = parent.spin { sleep }
      expect(child.parent).to eq(parent)
      expect(parent.children).to eq([child])
    end

    it 'removes a finished child from its parent' do
      f = spin { :x }
      f.await
      expect(Fiber.current.children).to be_empty
    end

    it 'marks the main fiber' do
      expect(Fiber.current.main?).to be(true)
      expect(Fiber.current.tag).to eq(:main)
      expect(spin { }.main?).to be_nil
      expect(Fiber.current.inspect).to match(/\A#<Fiber main:\d+ \(root\) \(running\)>\z/)
    end

    it 'records tag and location' do
      f = spin(:worker) { }
      expect(f.tag).to eq(:worker)
      expect(f.location).to include(__FILE__)
      expect(f.inspect).to match(/#<Fiber worker:\d+ .*fiber_spec.rb:\d+.* \(runnable\)>/)
    end
  end

  describe 'state and result' do
    it 'goes runnable → running/waiting → dead' do
      f = spin { Fiber.current.state.tap { sleep 0.01 } }
      expect(f.state).to eq(:runnable)
      expect(f.running?).to be_nil
      snooze
      expect(f.state).to eq(:waiting)
      expect(f.running?).to be(true)
      expect(f.await).to eq(:running)
      expect(f.state).to eq(:dead)
      expect(f.dead?).to be(true)
      expect(f.running?).to be(false)
      expect(f.result).to eq(:running)
    end

    it 'passes the first resume value to the block' do
      f = spin { |v| v }
      f.schedule(:first)
      expect(f.await).to eq(:first)
    end

    it 'fails a fiber spun without a block with NoMethodError' do
      f = Fiber.current.spin
      expect { f.await }.to raise_error(NoMethodError)
    end
  end

  describe 'await' do
    it 'returns the result and can be called repeatedly on a dead fiber' do
      f = spin { :v }
      expect(f.await).to eq(:v)
      expect(f.await).to eq(:v)
      expect(f.join).to eq(:v)
      expect(f.value).to eq(:v)
    end

    it 'lets several fibers await the same fiber' do
      f = spin { sleep 0.01; :r }
      waiters = 3.times.map { spin { f.await } }
      expect(Fiber.await(waiters)).to eq(%i[r r r])
    end

    it 'chains awaits (overview: b awaits a)' do
      a = spin { sleep 0.01; :foo }
      b = spin { a.await }
      expect(b.await).to eq(:foo)
    end

    it 'raises FiberError when a fiber awaits itself' do
      expect { Fiber.current.await }.to raise_error(FiberError)
    end

    it 'Fiber.await returns results in argument order, [] for none' do
      fibers = 3.times.map { |i| spin { sleep 0.001 * (3 - i); i * 10 } }
      expect(Fiber.await(*fibers)).to eq([0, 10, 20])
      expect(Fiber.await).to eq([])
    end

    it 'Fiber.await terminates the others on the first error' do
      ensured = []
      a = spin do
        sleep 1
      ensure
        ensured << :a
      end
      b = spin { sleep 0.01; raise 'boom' }
      expect { Fiber.await(a, b) }.to raise_error(RuntimeError, 'boom')
      expect(a.state).to eq(:dead)
      expect(ensured).to eq([:a])
    end

    it 'Fiber.await takes an array, counts a fiber listed twice once, and rejects non-fibers' do
      a = spin { sleep 0.005; :a }
      expect(Fiber.await([a, a])).to eq(%i[a a])
      expect { Fiber.await(a, :x) }.to raise_error(TypeError, /expected a Fiber/)
      expect { Fiber.await(Fiber.current) }.to raise_error(FiberError)
    end

    it 'Fiber.await raises the error of a fiber already dead, after terminating the others' do
      dead = spin { RuntimeError.new('early') } # a result that is an exception
      snooze
      other = spin { sleep 1 }
      expect { Fiber.await(other, dead) }.to raise_error(RuntimeError, 'early')
      expect(other.state).to eq(:dead)
    end

    it 'leaves no wake-up behind when an await is interrupted' do
      a = spin { sleep 0.01 }
      w = spin do
        begin
          a.await
        rescue RuntimeError
          nil
        end
        t = monotonic
        sleep 0.05
        monotonic - t
      end
      snooze
      w.raise(RuntimeError)
      expect(w.await).to be >= 0.045
      expect(a.await).to be_nil
    end

    it 'awaits a thousand fibers ending in any order, also under GC.stress' do
      fibers = 1000.times.map { |i| spin { sleep 0.001 * (i % 7); i } }
      expect(Fiber.await(fibers)).to eq((0...1000).to_a)
      GC.stress = true
      begin
        fibers = 20.times.map { |i| spin { snooze; raise 'x' if i == 13; i } }
        expect { Fiber.await(fibers) }.to raise_error(RuntimeError, 'x')
        expect(fibers.map(&:state).uniq).to eq([:dead])
        expect(spin { spin { :inner }.await }.await).to eq(:inner)
      ensure
        GC.stress = false
      end
    end

    it 'keeps children lists and awaits intact across GC.compact' do
      parents = 10.times.map do |i|
        spin do
          kids = 3.times.map { |j| spin { suspend; [i, j] } }
          suspend
          Fiber.await(kids)
        end
      end
      snooze
      waiters = parents.first(3).map { |p| spin { p.await } }
      snooze
      GC.compact
      expect(parents.map { |p| p.children.size }).to eq([3] * 10)
      parents.each { |p| p.children.each(&:schedule) }
      snooze
      GC.compact
      parents.each(&:schedule)
      expect(Fiber.await(parents).flatten(1).size).to eq(30)
      expect(Fiber.await(waiters).map(&:size)).to eq([3, 3, 3])
    end

    it 'Fiber.select returns the first to finish and leaves the rest running' do
      slow = spin { sleep 1 }
      fast = spin { sleep 0.01; :fast }
      expect(Fiber.select(slow, fast)).to eq([fast, :fast])
      expect(slow.state).to eq(:waiting)
      expect(Fiber.select).to be_nil
    end

    it 'await_all_children returns results or nil' do
      expect(Fiber.current.await_all_children).to be_nil
      spin { 1 }
      spin { 2 }
      expect(Fiber.current.await_all_children).to eq([1, 2])
    end
  end

  describe 'stopping' do
    it 'stop ends the fiber quietly with a value, running ensure' do
      out = []
      f = spin do
        sleep 1
      ensure
        out << :ensure
      end
      snooze
      expect(f.stop(:stopped)).to eq(f)
      expect(f.await).to eq(:stopped)
      expect(out).to eq([:ensure])
      expect(f.stop).to be_nil
    end

    it 'stop before start prevents the block from running' do
      ran = false
      f = spin { ran = true }
      f.interrupt
      f.await
      expect(ran).to be(false)
    end

    it 'terminate gives a nil result and does not propagate' do
      f = spin { sleep 1 }
      snooze
      f.terminate
      expect(f.await).to be_nil
    end

    it 'cancel propagates to the parent' do
      f = spin { sleep 1 }
      snooze
      f.cancel
      expect { f.await }.to raise_error(Polyphony::Cancel)
    end

    it 'stop, cancel and terminate of a finished fiber return nil and keep its result' do
      f = spin { :done }
      f.await
      expect([f.stop(:late), f.interrupt, f.kill, f.move_on, f.cancel, f.terminate]).to eq([nil] * 6)
      expect(f.result).to eq(:done)
      expect(f.await).to eq(:done)
    end

    it 'raise supports all argument forms and is a no-op on a dead fiber' do
      [[[], RuntimeError, 'RuntimeError'], [['msg'], RuntimeError, 'msg'],
       [[ArgumentError], ArgumentError, 'ArgumentError'], [[ArgumentError, 'x'], ArgumentError, 'x'],
       [[IOError.new('io')], IOError, 'io']].each do |args, klass, msg|
        f = spin { sleep 1 }
        snooze
        expect(f.raise(*args)).to eq(f)
        expect { f.await }.to raise_error(klass, msg)
      end
      dead = spin { }
      dead.await
      expect(dead.raise('x')).to eq(dead)
    end

    it 'restart re-runs a live fiber (same object) with the value' do
      runs = []
      f = spin { |v| runs << v; sleep 1 }
      snooze
      expect(f.restart(:again)).to eq(f)
      snooze
      f.stop
      f.await
      expect(runs).to eq([nil, :again])
    end

    it 'restart of a finished fiber creates a new fiber' do
      f = spin(:t) { |v| v || :first }
      f.await
      g = f.restart(:second)
      expect(g).not_to eq(f)
      expect(g.tag).to eq(:t)
      expect(g.await).to eq(:second)
    end

    it 'restart of the main fiber raises RuntimeError (differences.md: restart main fiber)' do
      expect { Fiber.current.restart }.to raise_error(RuntimeError, "Can't restart main fiber")
    end

    it 'reproduces the overview stop/restart sequence' do
      out = []
      f = spin do
        out << 'going to sleep'
        sleep 0.05
        out << 'done sleeping'
      ensure
        out << 'stopped'
      end
      sleep 0.02
      f.stop
      f.restart
      f.await
      expect(out).to eq(['going to sleep', 'stopped', 'going to sleep', 'done sleeping', 'stopped'])
    end
  end

  describe 'structured concurrency' do
    it 'terminates children when the parent finishes, running their ensure blocks' do
      out = []
      parent = spin do
        spin do
          sleep 1
        rescue Polyphony::Terminate
          out << :terminated
        ensure
          out << :ensure
        end
        snooze
        :parent_done
      end
      expect(parent.await).to eq(:parent_done)
      expect(out).to eq(%i[terminated ensure])
    end

    it 'never runs children that had not started when the parent finished' do
      ran = false
      parent = spin { spin { ran = true }; :x }
      parent.await
      expect(ran).to be(false)
    end

    it 'raises a child error in the parent at its current switchpoint' do
      x = spin { sleep 0.5 }
      spin { sleep 0.01; raise 'y' }
      expect { x.await }.to raise_error(RuntimeError, 'y')
      expect(x.state).to eq(:waiting)
    end

    it 'delivers an awaited child error once, from await' do
      f = spin { raise 'once' }
      expect { f.await }.to raise_error(RuntimeError, 'once')
      expect { sleep 0.01 }.not_to raise_error
    end

    it 'sets source_fiber on uncaught exceptions' do
      f = spin { raise 'src' }
      err = begin
        f.await
      rescue StandardError
        $!
      end
      expect(err.source_fiber).to eq(f)
    end

    it 'does not propagate MoveOn or Terminate' do
      f = spin { raise Polyphony::MoveOn, :mv }
      expect(f.await).to eq(:mv)
    end

    it 'leaves siblings running when the parent rescues a child error' do
      sibling = spin { sleep 1 }
      spin { raise 'err' }
      begin
        sleep 0.01
      rescue RuntimeError
        nil
      end
      expect(sibling.state).to eq(:waiting)
    end

    it 'replaces the parent result with an error raised while terminating a child' do
      parent = spin do
        spin do
          sleep 1
        rescue Polyphony::Terminate
          raise 'foo'
        end
        snooze
        :ok
      end
      expect { parent.await }.to raise_error(RuntimeError, 'foo')
    end

    it 'propagates graceful shutdown to children' do
      seen = nil
      parent = spin do
        spin do
          sleep 1
        ensure
          seen = Fiber.current.graceful_shutdown?
        end
        sleep 1
      end
      snooze
      snooze
      parent.terminate(graceful: true)
      parent.await
      expect(seen).to be(true)
    end

    it 'shutdown_all_children terminates and waits' do
      fibers = 3.times.map { spin { sleep 1 } }
      snooze
      Fiber.current.shutdown_all_children
      expect(fibers.map(&:state)).to eq(%i[dead dead dead])
    end

    it 'terminate_all_children does not wait' do
      f = spin { sleep 1 }
      snooze
      Fiber.current.terminate_all_children
      expect(f.state).to eq(:runnable)
      f.await
    end
  end

  describe 'reparenting, monitoring and messaging' do
    it 'detaches to the main fiber and attaches elsewhere' do
      p1 = spin { sleep }
      child = p1.spin { sleep }
      child.detach
      expect(child.parent).to eq(Fiber.current)
      p2 = spin { sleep }
      child.attach_to(p2)
      expect(child.parent).to eq(p2)
      expect(p2.children).to eq([child])
    end

    it 'delivers [fiber, result] to monitors' do
      f = spin { sleep 0.01; :res }
      f.monitor(Fiber.current)
      expect(Fiber.current.monitor_mailbox.shift).to eq([f, :res])
    end

    it 'passes messages through the mailbox' do
      f = spin { [Fiber.current.receive, Fiber.current.receive] }
      f << :a
      f.send(:b)
      expect(f.await).to eq(%i[a b])
    end

    it 'returns exceptions sent as messages instead of raising them' do
      f = spin { [Fiber.current.receive] }
      f << RuntimeError.new('msg')
      expect(f.await.first).to be_a(RuntimeError)
    end
  end

  describe 'spin_loop' do
    it 'loops until break' do
      count = 0
      f = spin_loop do
        count += 1
        break if count == 5

        snooze
      end
      expect(f.await).to be_nil
      expect(count).to eq(5)
    end

    it 'is throttled with rate:' do
      count = 0
      f = spin_loop(rate: 100) { count += 1 }
      sleep 0.055
      f.stop
      expect(count).to be_between(2, 7)
    end
  end

  describe 'fork' do
    it 'gives a forked child a working backend after post_fork' do
      r, w = IO.pipe
      pid = fork do
        r.close
        Thread.current.backend.post_fork
        res = Fiber.await(3.times.map { |i| spin { sleep 0.01; i } })
        w.write(res.inspect)
        w.close
        exit!(0)
      end
      w.close
      _, status = backend.waitpid(pid)
      expect(status).to eq(0)
      expect(backend.read(r, +'', nil, true, 0)).to eq('[0, 1, 2]')
    ensure
      r&.close
      w&.close unless w&.closed?
    end
  end

  describe 'native fiber state' do
    it 'keeps its state out of instance_variables' do
      f = spin(:t) { }
      expect(f.instance_variables).to eq([])
      f.await
      expect(f.instance_variables).to eq([])
    end

    it 'records the caller of spin_loop and keeps the spin site on restart' do
      line = __LINE__ + 1
      f = spin_loop { sleep }
      expect(f.location).to include("#{__FILE__}:#{line}")
      f.stop
      g = spin { :a }
      g.await
      h = g.restart
      expect(h.location).to eq(g.location)
      expect(h.await).to eq(:a)
    end

    it 'builds caller from the spin sites of the fiber and its ancestors' do
      inner = nil
      outer = spin { inner = spin { sleep }; sleep }
      snooze
      expect(inner.caller.size).to eq(2)
      expect(inner.caller.last).to eq(outer.location)
      outer.set_caller(%w[a b])
      expect(inner.caller.last(2)).to eq(%w[a b])
      expect(outer.location).to eq('a')
    end

    it 'rejects bad arguments with clear errors' do
      expect { Fiber.current.spin(1, 2, 3) { } }.to raise_error(ArgumentError)
      expect { spin(1, 2) { } }.to raise_error(ArgumentError)
      expect { Fiber.current.spin(nil, -1) { } }.to raise_error(ArgumentError)
      expect { Fiber.current.add_child(:x) }.to raise_error(TypeError)
      expect { Fiber.current.monitor(1) }.to raise_error(TypeError)
      f = spin { }
      expect { f.parent = 'x' }.to raise_error(TypeError)
      expect { f.schedule(1, 2) }.to raise_error(ArgumentError)
      expect { f.thread = :x }.to raise_error(TypeError)
      expect { f.set_caller('x') }.to raise_error(TypeError)
      expect { Fiber.current.spin(nil, 'x') { } }.to raise_error(TypeError)
    end

    it 'raises, never crashes, when an explicit spin site cannot be formatted' do
      bad = Object.new
      def bad.to_s = raise(IOError, 'no to_s')
      f = spin { }
      f.set_caller([bad])
      expect { f.location }.to raise_error(IOError, 'no to_s')
      f.set_caller(%w[x y])
      expect(f.location).to eq('x')
      expect(f.caller.first(2)).to eq(%w[x y])
    end

    it 'survives GC.stress while fibers spin, monitor, message and finish' do
      GC.stress = true
      begin
        fibers = 5.times.map do |i|
          spin do
            c = spin { 2 * Fiber.current.receive }
            c << i
            c.await
          end
        end
        results = Fiber.await(fibers)
      ensure
        GC.stress = false
      end
      expect(results).to eq([0, 2, 4, 6, 8])
    end
  end

  describe 'fibers that never start' do
    it 'ends a fiber raised into before it started, reporting to the parent' do
      ran = false
      f = spin { ran = true }
      f.raise(ArgumentError, 'early')
      expect { f.await }.to raise_error(ArgumentError, 'early')
      expect(ran).to be(false)
      expect(f.state).to eq(:dead)
    end

    it 'terminates thousands of unstarted fibers without allocating stacks' do
      maps = File.read('/proc/self/maps').lines.size
      fibers = 20_000.times.map { spin { :never } }
      fibers.each(&:terminate)
      expect(Fiber.await(fibers).uniq).to eq([nil])
      expect(File.read('/proc/self/maps').lines.size).to be < maps + 1000
    end

    it 'fails a fiber whose stack cannot be allocated with FiberError, promptly' do
      # Fiber stacks of 64 MiB (Ruby's own setting) and an address-space limit
      # 3 GiB above what the process maps: Ruby's fiber pool allocates stacks
      # in batches (32, 32, 64, ...), so the second batch fits and the third
      # (4 GiB) fails, leaving about 1 GiB for Ruby's heap. A limit close to
      # the heap instead hangs Ruby 3.3, which gives heap pages back at
      # GC.start and then spins after its own out-of-memory error.
      out, err, = run_ruby(<<~'RUBY', env: { 'RUBY_FIBER_MACHINE_STACK_SIZE' => (64 << 20).to_s })
        require 'polyphony'
        used = File.read('/proc/self/status')[/VmSize:\s+(\d+)/, 1].to_i * 1024
        Process.setrlimit(:AS, used + (3 << 30))
        t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        fibers = 3000.times.map { spin { sleep } }
        begin
          Fiber.await(fibers)
        rescue FiberError
          puts "FiberError #{fibers.count(&:dead?)}"
        end
        puts Process.clock_gettime(Process::CLOCK_MONOTONIC) - t < 10
      RUBY
      expect(err).to eq('')
      expect(out).to eq("FiberError 3000\ntrue\n")
    end
  end

  describe 'interject' do
    it 'runs the block in the target fiber; the blocking call returns the interjection' do
      seen = nil
      f = spin do
        r = sleep 1
        [r.class, Fiber.current]
      end
      snooze
      f.interject { seen = Fiber.current }
      klass, fiber = f.await
      expect(klass).to eq(Polyphony::Interjection)
      expect(fiber).to eq(f)
      expect(seen).to eq(f)
    end

    it 'lets an I/O operation continue after the block runs' do
      r, w = IO.pipe
      n = 0
      f = spin { backend.read(r, +'', 5, true, 0) }
      snooze
      f.interject { n += 1 }
      snooze
      w << 'hello'
      expect(f.await).to eq('hello')
      expect(n).to eq(1)
    ensure
      r&.close
      w&.close
    end

    it 'raises an error raised by the block in the target' do
      f = spin { sleep 1 }
      snooze
      f.interject { raise 'boom' }
      expect { f.await }.to raise_error(RuntimeError, 'boom')
    end
  end

  describe 'scale' do
    it 'spins and awaits 100,000 short fibers without exhausting memory maps' do
      fibers = 100_000.times.map { spin { :x } }
      expect(Fiber.await(fibers).size).to eq(100_000)
      expect(File.read('/proc/self/maps').lines.size).to be < 30_000
    end

    it 'runs 10,000 concurrently sleeping fibers' do
      fibers = 10_000.times.map { spin { sleep 0.05; 1 } }
      expect(Fiber.await(fibers).sum).to eq(10_000)
    end
  end
end
