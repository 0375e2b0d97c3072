# frozen_string_literal: true

RSpec.describe 'Process-level behaviour' do
  let(:env) { { 'POLYPHONY_BACKEND' => ENV.fetch('POLYPHONY_BACKEND', 'auto') } }

  # Starts a child Ruby running `code` (which prints "ready" when set up),
  # yields [stdout, wait fiber] once it is ready.
  def with_ready_child(code)
    Open3.popen3(env, SpecHelpers::RUBY, '-I', SpecHelpers::LIB, '-e', code) do |_i, o, e, t|
      expect(o.gets).to eq("ready\n")
      yield o, t, e
    end
  end

  it 'prints the overview program output exactly' do
    code = <<~RUBY
      require 'polyphony'
      f = spin do
        puts "going to sleep"
        sleep 0.2
        puts "done sleeping"
      ensure
        puts "stopped"
      end
      sleep 0.1
      f.stop
      f.restart
      f.await
      a = spin { sleep 0.05; :foo }
      b = spin { a.await }
      p b.await
      fibers = 3.times.map { |i| spin { i * 10 } }
      p Fiber.await(*fibers)
    RUBY
    out, err, status = run_ruby(code, env: env)
    expect(err).to eq('')
    expect(status.success?).to be(true)
    expect(out).to eq("going to sleep\nstopped\ngoing to sleep\ndone sleeping\nstopped\n:foo\n[0, 10, 20]\n")
  end

  it 'terminates child fibers at exit, running their ensure blocks' do
    code = <<~RUBY
      require 'polyphony'
      spin do
        sleep
      rescue Polyphony::Terminate
        puts 'got Terminate'
      ensure
        puts 'ensure'
      end
      snooze
      spin { puts 'never runs' }
    RUBY
    out, _err, status = run_ruby(code, env: env)
    expect(out).to eq("got Terminate\nensure\n")
    expect(status.exitstatus).to eq(0)
  end

  it 'finalizes thread backends at thread end under GC.stress' do
    out, err, status = run_ruby(<<~'RUBY')
      require 'polyphony'
      GC.stress = true
      threads = 2.times.map do |i|
        Thread.new do
          r, w = IO.pipe
          spin { Thread.current.backend.read(r, +'', 10, true, 0) }
          spin { sleep 10 }
          sleep 0.01
          w.close
          i
        end
      end
      p threads.map(&:value)
      GC.stress = false
      GC.start
    RUBY
    expect(err).to eq('')
    expect(out).to eq("[0, 1]\n")
    expect(status.success?).to be(true)
  end

  it 'keeps the exit status when children are still running' do
    out, _err, status = run_ruby("require 'polyphony'; spin { sleep }; snooze; exit 3", env: env)
    expect(status.exitstatus).to eq(3)
    expect(out).to eq('')
    _, _, status = run_ruby("require 'polyphony'; spin { sleep 0.01; exit 4 }; sleep", env: env)
    expect(status.exitstatus).to eq(4)
  end

  it 'ends with status 1 and a report when a child error reaches the main fiber' do
    _out, err, status = run_ruby("require 'polyphony'; spin { raise 'child failed' }; sleep 1", env: env)
    expect(status.exitstatus).to eq(1)
    expect(err).to include('child failed')
  end

  it 'turns SIGTERM into SystemExit(0) in the main fiber, running ensure blocks' do
    code = <<~RUBY
      require 'polyphony'
      spin { begin; sleep; ensure; puts 'child ensure'; end }
      begin
        puts 'ready'
        $stdout.flush
        sleep
      ensure
        puts 'main ensure'
      end
    RUBY
    with_ready_child(code) do |o, t|
      Process.kill('TERM', t.pid)
      expect(o.read).to eq("main ensure\nchild ensure\n")
      expect(t.value.exitstatus).to eq(0)
    end
  end

  it 'raises Interrupt in the main fiber on SIGINT while it is blocked in the kernel' do
    code = <<~RUBY
      require 'polyphony'
      begin
        puts 'ready'
        $stdout.flush
        sleep 10
      rescue Interrupt
        puts 'interrupted'
      end
    RUBY
    with_ready_child(code) do |o, t|
      t0 = monotonic
      Process.kill('INT', t.pid)
      expect(o.read).to eq("interrupted\n")
      expect(t.value.success?).to be(true)
      expect(monotonic - t0).to be < 1
    end
  end

  it 'exits at once on a second SIGINT, even if the first Interrupt was rescued' do
    code = <<~RUBY
      require 'polyphony'
      begin
        puts 'ready'
        $stdout.flush
        sleep 10
      rescue Interrupt
        puts 'first'
        $stdout.flush
      end
      begin
        sleep 10
      ensure
        puts 'never printed'
      end
    RUBY
    with_ready_child(code) do |o, t|
      Process.kill('INT', t.pid)
      expect(o.gets).to eq("first\n")
      t0 = monotonic
      Process.kill('INT', t.pid)
      expect(o.read).to eq('')
      expect(t.value.exitstatus).to eq(1)
      expect(monotonic - t0).to be < 2
    end
  end

  it 'handles SIGTERM within a fraction of a second while blocked in sleep' do
    with_ready_child("require 'polyphony'; puts 'ready'; $stdout.flush; sleep 30") do |_o, t|
      t0 = monotonic
      Process.kill('TERM', t.pid)
      expect(t.value.exitstatus).to eq(0)
      expect(monotonic - t0).to be < 1
    end
  end

  it 'runs trap handlers in a fiber that may do I/O while other fibers keep running' do
    code = <<~'RUBY'
      require 'polyphony'
      ticks = 0
      spin_loop { ticks += 1; sleep 0.005 }
      done = Polyphony::Event.new
      trap('USR1') do |signo|
        r, w = IO.pipe
        spin { w << 'handler io'; w.close }
        puts [signo, r.read, Fiber.current.tag.inspect, Fiber.current.parent.inspect].join(' ')
        sleep 0.05
        done.signal
      end
      puts 'ready'
      $stdout.flush
      2.times do
        before = ticks
        done.await
        puts "ticked while handling: #{ticks - before >= 5}"
        $stdout.flush
      end
    RUBY
    with_ready_child(code) do |o, t|
      line = "#{Signal.list['USR1']} handler io :oob nil\nticked while handling: true\n"
      Process.kill('USR1', t.pid)
      expect(o.gets + o.gets).to eq(line)
      Process.kill('USR1', t.pid)
      expect(o.read).to eq(line)
      expect(t.value.success?).to be(true)
    end
  end

  it 'raises an exception from a trap handler in the main fiber' do
    code = <<~RUBY
      require 'polyphony'
      trap('USR2') { raise IOError, 'from handler' }
      begin
        puts 'ready'
        $stdout.flush
        sleep 10
      rescue IOError => e
        puts e.message
      end
      p trap('USR2', 'DEFAULT').is_a?(Proc)
    RUBY
    with_ready_child(code) do |o, t|
      Process.kill('USR2', t.pid)
      expect(o.read).to eq("from handler\ntrue\n")
      expect(t.value.success?).to be(true)
    end
  end

  it 'survives GC.stress in trap handlers, fork and backticks' do
    code = <<~'RUBY'
      require 'polyphony'
      GC.stress = true
      got = Polyphony::Queue.new
      trap('USR1') { |s| got << s }
      2.times { Process.kill('USR1', Process.pid); p got.shift }
      pid = Polyphony.fork { exit 3 }
      p Process.wait2(pid)[1].exitstatus
      p `echo hi`
    RUBY
    out, err, status = run_ruby(code, env: env, timeout: 60)
    expect(err).to eq('')
    expect(out).to eq("#{Signal.list['USR1']}\n#{Signal.list['USR1']}\n3\n\"hi\\n\"\n")
    expect(status.success?).to be(true)
  end

  it 'ends the program with exit!, abort and exit as stock Ruby does' do
    out, _err, status = run_ruby(
      "require 'polyphony'; spin { begin; exit! 3; ensure; puts 'no'; end }; at_exit { puts 'no' }; sleep", env: env
    )
    expect([out, status.exitstatus]).to eq(['', 3])
    out, err, status = run_ruby("require 'polyphony'; spin { abort 'aborted' }; sleep", env: env)
    expect([out, err, status.exitstatus]).to eq(['', "aborted\n", 1])
    code = "require 'polyphony'; at_exit { puts 'user hook' }; " \
           "spin { begin; sleep; ensure; puts 'child'; end }; snooze; exit 2"
    out, _err, status = run_ruby(code, env: env)
    expect([out, status.exitstatus]).to eq(["user hook\nchild\n", 2])
  end

  it 'stops other threads at exit, unwinding their fibers' do
    code = <<~RUBY
      require 'polyphony'
      Thread.new do
        spin { begin; sleep; ensure; puts 'thread child ensure'; end }
        begin
          sleep
        ensure
          puts 'thread ensure'
        end
      end
      sleep 0.05
    RUBY
    out, err, status = run_ruby(code, env: env)
    expect(err).to eq('')
    expect(out.lines.sort).to eq(["thread child ensure\n", "thread ensure\n"])
    expect(status.success?).to be(true)
  end

  it 'lets Thread#raise land while the thread waits in the kernel' do
    th = Thread.new do
      sleep 10
    rescue StandardError => e
      e.message
    end
    sleep 0.05
    th.raise('wake up')
    expect(th.value).to eq('wake up')
  end

  it 'wakes a thread blocked in the kernel on a cross-thread schedule' do
    q = Polyphony::Queue.new
    th = Thread.new { q.shift }
    sleep 0.05
    q << :hello
    expect(th.value).to eq(:hello)
  end

  it 'never loses cross-thread wake-ups under load' do
    threads = 4.times.map do
      Thread.new do
        q = Polyphony::Queue.new
        Thread.current[:q] = q
        200.times.map { q.shift }.size
      end
    end
    sleep 0.02
    200.times { threads.each { |t| t[:q] << 1 } }
    expect(threads.map(&:value)).to eq([200] * 4)
  end

  it 'selects the backend at run time and refuses an unknown one' do
    out, = run_ruby("require 'polyphony'; p Thread.current.backend.kind", env: { 'POLYPHONY_BACKEND' => 'epoll' })
    expect(out).to eq(":epoll\n")
    out, = run_ruby("require 'polyphony'; p Thread.current.backend.kind",
                    env: { 'POLYPHONY_BACKEND' => nil, 'POLYPHONY_LIBEV' => '1' })
    expect(out).to eq(":epoll\n")
    _, err, status = run_ruby("require 'polyphony'", env: { 'POLYPHONY_BACKEND' => 'bogus' })
    expect(status.success?).to be(false)
    expect(err).to include('POLYPHONY_BACKEND')
  end

  it 'raises a clear error at require time when io_uring is forced but unavailable' do
    knob = '/proc/sys/kernel/io_uring_disabled'
    skip_reason = 'needs root and the kernel.io_uring_disabled knob' unless File.writable?(knob)
    raise skip_reason if skip_reason

    old = File.read(knob)
    require 'tempfile'
    results = []
    begin
      File.write(knob, '2')
      # No helper threads here: they would need a backend while io_uring is off.
      [{ 'POLYPHONY_BACKEND' => 'io_uring' }, { 'POLYPHONY_BACKEND' => nil }].each do |e|
        out = Tempfile.new('out')
        err = Tempfile.new('err')
        pid = Process.spawn(e, SpecHelpers::RUBY, '-I', SpecHelpers::LIB, '-e',
                            "require 'polyphony'; p Thread.current.backend.kind", out: out.path, err: err.path)
        _, st = Process.waitpid2(pid)
        results << [File.read(out.path), File.read(err.path), st]
      end
    ensure
      File.write(knob, old)
    end
    _, err, status = results[0]
    out = results[1][0]
    expect(status.success?).to be(false)
    expect(err).to include('io_uring is not available')
    expect(out).to eq(":epoll\n")
  end
end
