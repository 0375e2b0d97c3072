# frozen_string_literal: true

require 'stringio'

RSpec.describe 'Subprocesses and fork' do
  let(:env) { { 'POLYPHONY_BACKEND' => ENV.fetch('POLYPHONY_BACKEND', 'auto') } }

  it 'makes a Process::Status from a raw wait result, keeping $?' do
    pid = fork { exit 7 }
    pair = backend.waitpid(pid)
    `true`
    before = $?
    status = Process::Status.from_status_array(pair)
    expect(status).to be_a(Process::Status)
    expect([status.pid, status.exitstatus]).to eq([pid, 7])
    expect($?.pid).to eq(before.pid)
    expect(Process::Status.from_status_array([123, 0]).success?).to be(true)
    expect { Process::Status.from_status_array(nil) }.to raise_error(TypeError)
    expect { Process::Status.from_status_array([1]) }.to raise_error(TypeError)
    expect { Process::Status.from_status_array(['x', 0]) }.to raise_error(TypeError)
  end

  describe 'waiting for children' do
    # Overlap, not elapsed time, shows concurrency: spawning is thread-blocking
    # and takes longer in a process with many mappings (fiber stacks).
    def expect_overlapping(spans)
      expect(spans.map(&:first).max).to be < spans.map(&:last).min
    end

    def timed
      t = monotonic
      [yield, [t, monotonic]]
    end

    it 'runs 5 sleep 0.2 subprocesses concurrently while another fiber ticks' do
      results, ticks = with_ticker(0.01) do
        Fiber.await(5.times.map { spin { timed { Process.wait2(Process.spawn('sleep 0.2'))[1] } } })
      end
      expect(results.map { |st, _| st.success? }).to eq([true] * 5)
      expect_overlapping(results.map(&:last))
      expect(ticks).to be >= 10
    end

    it 'runs system, backticks and Open3 concurrently' do
      results, ticks = with_ticker(0.01) do
        Fiber.await(
          spin { timed { system('sleep 0.2') } },
          spin { timed { `sleep 0.2; echo out` } },
          spin { timed { Open3.capture2('sleep 0.2; echo cap')[0] } },
          spin { timed { Open3.capture3('sleep 0.2; echo err >&2')[1] } },
          spin { timed { IO.popen('sleep 0.2; echo pop', &:read) } }
        )
      end
      expect(results.map(&:first)).to eq([true, "out\n", "cap\n", "err\n", "pop\n"])
      expect_overlapping(results.map(&:last))
      expect(ticks).to be >= 10
    end

    it 'sets $? in Process.wait*, system, backticks and IO.popen#close (differences.md: $? set)' do
      pid = Process.spawn('exit 3')
      expect(Process.wait(pid)).to eq(pid)
      expect($?.exitstatus).to eq(3)
      pid = Process.spawn('exit 4')
      expect(Process.waitpid2(pid)[1].exitstatus).to eq(4)
      expect($?.pid).to eq(pid)
      expect(system('exit 5')).to be(false)
      expect($?.exitstatus).to eq(5)
      expect(`echo hi; exit 6`).to eq("hi\n")
      expect($?.exitstatus).to eq(6)
      IO.popen('exit 7').close
      expect($?.exitstatus).to eq(7)
      pid = Process.spawn('exit 8')
      expect(Process::Status.wait(pid).exitstatus).to eq(8)
    end

    it 'waits for any child (-1) without blocking, and honours WNOHANG' do
      pid = Process.spawn('sleep 0.05')
      expect(Process.wait(-1, Process::WNOHANG)).to be_nil
      (got, status), ticks = with_ticker(0.005) { Process.wait2(-1) }
      expect(got).to eq(pid)
      expect(status.success?).to be(true)
      expect(ticks).to be >= 3
      expect { Process.wait }.to raise_error(Errno::ECHILD)
    end

    it 'returns a fiber from Process.detach with pid, join(limit) and value' do
      pid = Process.spawn('sleep 0.05; exit 2')
      waiter = Process.detach(pid)
      expect(waiter).to be_a(Fiber)
      expect(waiter.pid).to eq(pid)
      expect(waiter.join(0.001)).to be_nil
      expect(waiter.value.exitstatus).to eq(2)
      expect(waiter.join.exitstatus).to eq(2)
      expect(waiter.alive?).to be(false)
    end

    it 'raises clear errors for bad arguments' do
      expect { Process.wait('x') }.to raise_error(ArgumentError)
      expect { Process.wait(:x) }.to raise_error(TypeError)
      expect { Process.wait(1) }.to raise_error(Errno::ECHILD)
      expect { Thread.current.backend.wait_child(0) }.to raise_error(ArgumentError)
      expect(Thread.current.backend.wait_child(1)).to be(false)
      expect { Process.detach('x') }.to raise_error(ArgumentError)
      expect { `#{'x' * 10}_no_such_command` }.to raise_error(Errno::ENOENT)
      expect { Kernel.send(:`, 42) }.to raise_error(NoMethodError)
    end
  end

  describe 'system, backticks and Open3' do
    it 'gives system the stock results: true, false, nil, or an exception on request' do
      expect(system('true')).to be(true)
      expect(system('exit 1')).to be(false)
      expect(system('no_such_command_for_polyphony')).to be_nil
      expect { system('exit 1', exception: true) }.to raise_error(RuntimeError, 'Command failed with exit 1: exit 1')
      expect { system('no_such_command_for_polyphony', exception: true) }.to raise_error(Errno::ENOENT)
      expect(Kernel.system('true')).to be(true)
      expect(system({ 'POLY_X' => '1' }, 'test "$POLY_X" = 1')).to be(true)
    end

    it 'lets the child of system inherit stdout' do
      out, err, status = run_ruby("require 'polyphony'; system('echo from child'); puts 'after'")
      expect(err).to eq('')
      expect(out).to eq("from child\nafter\n")
      expect(status.success?).to be(true)
    end

    it 'feeds stdin_data from a String or an IO-like object, ignoring EPIPE' do
      expect(Open3.capture3('cat; echo e >&2', stdin_data: 'abc')).to match(['abc', "e\n", be_success])
      expect(Open3.capture2('tr a-z A-Z', stdin_data: StringIO.new('xyz'))[0]).to eq('XYZ')
      expect(Open3.capture2e('echo a; echo b >&2')[0]).to eq("a\nb\n")
      out, status = Open3.capture2('true', stdin_data: 'x' * 1_000_000)
      expect([out, status.success?]).to eq(['', true])
      expect(Open3.capture2('cat', stdin_data: "\xFF".b, binmode: true)[0].encoding).to eq(Encoding::BINARY)
    end

    it 'gives Open3.popen3 a wait fiber that answers like a thread' do
      Open3.popen3('cat') do |i, o, _e, t|
        i << 'through cat'
        i.close
        expect(o.read).to eq('through cat')
        expect(t.pid).to be_a(Integer)
        expect(t.value.success?).to be(true)
      end
    end
  end

  describe 'IO.popen' do
    it 'closes without blocking other fibers while the child finishes' do
      io = IO.popen('sleep 0.2; exit 3')
      _, ticks = with_ticker(0.01) { io.close }
      expect(ticks).to be >= 10
      expect($?.exitstatus).to eq(3)
      expect(io.closed?).to be(true)
    end

    it 'closes like stock: the child sees EOF on stdin or SIGPIPE on stdout' do
      io = IO.popen('cat > /dev/null; exit 4', 'w')
      io << 'data'
      io.close
      expect($?.exitstatus).to eq(4)
      io = IO.popen('yes')
      io.gets
      io.close
      expect($?.termsig).to eq(Signal.list['PIPE'])
      io = IO.popen('cat', 'r+')
      io << 'duplex'
      io.close_write
      expect(io.read).to eq('duplex')
      io.close
      expect($?.success?).to be(true)
    end
  end

  describe 'fork' do
    it 'gives the child of Polyphony.fork fibers and I/O, and keeps its exit status' do
      r, w = IO.pipe
      pid = Polyphony.fork do
        r.close
        rr, ww = IO.pipe
        spin { sleep 0.01; ww << 'child io'; ww.close }
        w << rr.read << ' ' << Fiber.current.main?.inspect
        w.close
        exit 5
      end
      w.close
      expect(r.read).to eq('child io true')
      _, status = Process.wait2(pid)
      expect(status.exitstatus).to eq(5)
    end

    it 'ends a Polyphony.fork child with status 1 on an uncaught error, and 0 otherwise' do
      pid = Polyphony.fork { $stderr.reopen(File::NULL, 'w'); raise 'child error' }
      expect(Process.wait2(pid)[1].exitstatus).to eq(1)
      pid = Polyphony.fork { spin { sleep 0.01 } }
      expect(Process.wait2(pid)[1].exitstatus).to eq(0)
      expect { Polyphony.fork }.to raise_error(ArgumentError)
    end

    it 'terminates the fibers of a Polyphony.fork child when its block ends' do
      r, w = IO.pipe
      pid = Polyphony.fork do
        spin do
          sleep
        ensure
          w << 'child fiber ensure'
          w.close
        end
        snooze
      end
      w.close
      expect(r.read).to eq('child fiber ensure')
      Process.wait(pid)
    end

    it 'sets up a fresh backend in the child of a plain fork, also from a spun fiber' do
      r, w = IO.pipe
      pid = spin do
        fork do
          rr, ww = IO.pipe
          spin { ww << 'plain fork'; ww.close }
          w << rr.read
          w.close
          exit 6
        end
      end.await
      w.close
      expect(r.read).to eq('plain fork')
      expect(Process.wait2(pid)[1].exitstatus).to eq(6)

      pid = spin { fork || exit!(7 + Fiber.current.children.size) }.await
      expect(Process.wait2(pid)[1].exitstatus).to eq(7)
      pid = spin { fork || exit(8) }.await
      expect(Process.wait2(pid)[1].exitstatus).to eq(8)
    end
  end

  describe 'watch_process' do
    it 'waits for a command or a forked block' do
      t0 = monotonic
      expect(Polyphony.watch_process('sleep 0.05')).to be(true)
      expect(Polyphony.watch_process { sleep 0.05 }).to be(true)
      expect(Polyphony::Process.watch('true')).to be(true)
      expect(monotonic - t0).to be >= 0.1
      expect { Polyphony.watch_process }.to raise_error(ArgumentError)
    end

    it 'kills the child when the watching fiber is stopped' do
      r, w = IO.pipe
      watcher = spin do
        Polyphony.watch_process do
          trap('TERM') { w << 'got TERM'; w.close; exit 0 }
          sleep
        end
      end
      sleep 0.1
      watcher.stop
      watcher.await
      w.close
      expect(r.read).to eq('got TERM')
      expect { Process.wait }.to raise_error(Errno::ECHILD)
    end
  end
end
