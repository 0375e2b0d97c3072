# frozen_string_literal: true

require 'socket'
require 'digest'

RSpec.describe Polyphony::Backend do
  let(:pipe) { IO.pipe }
  after { pipe.each { |io| io.close unless io.closed? } }

  it 'is per thread and reports its kind' do
    expect(backend).to be_a(described_class)
    expect(Thread.current.backend).to equal(backend)
    expect(%i[io_uring epoll]).to include(backend.kind)
    expect(backend.kind).to eq(ENV['POLYPHONY_BACKEND'].to_sym) if ENV['POLYPHONY_BACKEND']
    other = Thread.new { Thread.current.backend }.value
    expect(other).not_to equal(backend)
  end

  it 'wakes with break from another thread' do
    expect(backend.break).to be(true)
  end

  describe 'read and write' do
    it 'reads what was written, with buffer position semantics' do
      r, w = pipe
      expect(backend.write(w, 'hello', ' ', 'world')).to eq(11)
      buf = +'xyz'
      expect(backend.read(r, buf, 5, false, -1)).to equal(buf)
      expect(buf).to eq('xyzhello')
      expect(backend.read(r, buf, 6, true, 1)).to eq('x world')
    end

    it 'reads to EOF and returns nil at immediate EOF' do
      r, w = pipe
      spin { backend.write(w, 'a' * 100_000); w.close }
      data = backend.read(r, +'', nil, true, 0)
      expect(data.bytesize).to eq(100_000)
      expect(backend.read(r, +'', 10, false, 0)).to be_nil
    end

    it 'parks only the reading fiber' do
      r, w = pipe
      ticks = 0
      ticker = spin { loop { ticks += 1; sleep 0.005 } }
      spin { sleep 0.05; backend.write(w, 'late') }
      expect(backend.read(r, +'', 4, true, 0)).to eq('late')
      expect(ticks).to be >= 2
      ticker.stop
    end

    it 'streams 20 MB through a pipe between two fibers intact' do
      r, w = pipe
      chunk = Random.new(1).bytes(65_536)
      writer = spin do
        320.times { backend.write(w, chunk) }
        w.close
      end
      digest = Digest::SHA256.new
      size = 0
      backend.read_loop(r, 65_536) do |data|
        digest << data
        size += data.bytesize
      end
      writer.await
      expected = Digest::SHA256.new
      320.times { expected << chunk }
      expect(size).to eq(320 * 65_536)
      expect(digest.hexdigest).to eq(expected.hexdigest)
    end

    it 'yields new strings from read_loop and passes chunks to feed_loop' do
      r, w = pipe
      spin { backend.write(w, 'abc'); w.close }
      got = []
      backend.read_loop(r) { |d| got << d }
      expect(got.join).to eq('abc')

      r2, w2 = IO.pipe
      spin { backend.write(w2, 'def'); w2.close }
      receiver = []
      expect(backend.feed_loop(r2, receiver, :<<)).to eq(r2)
      expect(receiver.join).to eq('def')
    ensure
      [r2, w2].each { |io| io&.close unless io&.closed? }
    end

    it 'accepts an integer fd' do
      r, w = pipe
      backend.write(w.fileno, 'fd')
      expect(backend.read(r.fileno, +'', 2, true, 0)).to eq('fd')
    end
  end

  describe 'bad input' do
    it 'raises IOError for a closed IO' do
      r, w = pipe
      r.close
      expect { backend.read(r, +'', 1, false, 0) }.to raise_error(IOError)
      w.close
      expect { backend.write(w, 'x') }.to raise_error(IOError)
    end

    it 'raises TypeError for things that are not IOs or strings' do
      _, w = pipe
      expect { backend.read(:nope, +'', 1, false, 0) }.to raise_error(TypeError)
      expect { backend.read(nil, +'', 1, false, 0) }.to raise_error(TypeError)
      expect { backend.read(pipe[0], 42, 1, false, 0) }.to raise_error(TypeError)
      expect { backend.send(w, 42, 0) }.to raise_error(TypeError)
    end

    it 'raises ArgumentError for negative lengths and fds, and wrong arity' do
      r, w = pipe
      expect { backend.read(r, +'', -1, false, 0) }.to raise_error(ArgumentError)
      expect { backend.read(-3, +'', 1, false, 0) }.to raise_error(ArgumentError)
      expect { backend.write(w) }.to raise_error(ArgumentError)
      expect { backend.read(r) }.to raise_error(ArgumentError)
    end

    it 'raises FrozenError for a frozen buffer' do
      r, = pipe
      expect { backend.read(r, 'frozen', 1, false, 0) }.to raise_error(FrozenError)
    end

    it 'raises Errno::EBADF for a bad fd number' do
      expect { backend.write(99_999, 'x') }.to raise_error(Errno::EBADF)
    end

    it 'handles huge lengths without allocating them' do
      r, w = pipe
      backend.write(w, 'small')
      expect(backend.read(r, +'', 2**40, false, 0)).to eq('small')
      expect { backend.read(r, +'', 2**70, false, 0) }.to raise_error(RangeError)
    end

    it 'raises EPIPE in the writing fiber only' do
      r, w = pipe
      r.close
      other = spin { sleep 0.01; :fine }
      expect { backend.write(w, 'x') }.to raise_error(Errno::EPIPE)
      expect(other.await).to eq(:fine)
    end
  end

  describe 'interruption of in-flight operations' do
    it 'cancels a read when the fiber is stopped, without touching later data' do
      r, w = pipe
      f = spin { backend.read(r, +'', 10, false, 0) }
      snooze
      f.stop(:stopped)
      expect(f.await).to eq(:stopped)
      backend.write(w, 'after')
      expect(backend.read(r, +'', 5, true, 0)).to eq('after')
    end

    it 'ignores plain wake-ups during I/O (differences.md: plain wake-ups) but not exceptions' do
      r, w = pipe
      f = spin { backend.read(r, +'', 3, true, 0) }
      snooze
      f.schedule(:spurious)
      snooze
      expect(f.state).to eq(:waiting)
      backend.write(w, 'abc')
      expect(f.await).to eq('abc')
    end

    it 'survives GC.stress with operations interrupted in flight' do
      r, w = pipe
      GC.stress = true
      begin
        5.times do
          f = spin { backend.read(r, +'', 100, false, 0) }
          snooze
          f.raise('boom')
          expect { f.await }.to raise_error(RuntimeError, 'boom')
        end
        fibers = 5.times.map { |i| spin { sleep 0.001; snooze; i } }
        expect(Fiber.await(fibers)).to eq([0, 1, 2, 3, 4])
      ensure
        GC.stress = false
      end
      GC.start
      backend.write(w, 'ok')
      expect(backend.read(r, +'', 2, true, 0)).to eq('ok')
    end

    it 'survives GC.stress while fibers are queued with values' do
      GC.stress = true
      begin
        fibers = 10.times.map { |i| spin { |v| [i, Fiber.current.receive, v] } }
        fibers.each_with_index { |f, i| f << "msg#{i}" }
        fibers.each { |f| f.schedule(Object.new.to_s) }
        res = Fiber.await(fibers)
      ensure
        GC.stress = false
      end
      expect(res.map { |x| x[1] }).to eq(10.times.map { |i| "msg#{i}" })
    end
  end

  describe 'sockets' do
    it 'accepts, connects, sends and receives' do
      server = TCPServer.new('127.0.0.1', 0)
      port = server.addr[1]
      srv = spin do
        conn = backend.accept(server, TCPSocket)
        data = backend.recv(conn, +'', 100)
        backend.send(conn, data.upcase, 0)
        conn.close
        conn.class
      end
      client = Socket.new(:INET, :STREAM)
      backend.connect(client, '127.0.0.1', port)
      backend.send(client, 'hello', 0)
      expect(backend.recv(client, +'', 100)).to eq('HELLO')
      expect(backend.recv(client, +'', 100)).to be_nil
      expect(srv.await).to eq(TCPSocket)
    ensure
      client&.close
      server&.close
    end

    it 'serves many connections through accept_loop and recv_loop' do
      server = TCPServer.new('127.0.0.1', 0)
      port = server.addr[1]
      spin do
        backend.accept_loop(server, TCPSocket) do |conn|
          spin do
            backend.recv_loop(conn) { |d| backend.send(conn, d, 0) }
            conn.close
          end
        end
      end
      clients = 50.times.map do |i|
        spin do
          s = Socket.new(:INET, :STREAM)
          backend.connect(s, '127.0.0.1', port)
          backend.send(s, "msg#{i}", 0)
          r = backend.recv(s, +'', 100)
          s.close
          r
        end
      end
      expect(Fiber.await(clients)).to eq(50.times.map { |i| "msg#{i}" })
    ensure
      server&.close
    end

    it 'raises ECONNREFUSED for a closed port and RuntimeError for a bad host' do
      s = Socket.new(:INET, :STREAM)
      probe = TCPServer.new('127.0.0.1', 0)
      port = probe.addr[1]
      probe.close
      expect { backend.connect(s, '127.0.0.1', port) }.to raise_error(Errno::ECONNREFUSED)
      s2 = Socket.new(:INET, :STREAM)
      expect { backend.connect(s2, 'no-such-host.invalid', 80) }.to raise_error(RuntimeError, /getaddrinfo/)
      expect { backend.connect(s2, '127.0.0.1', 70_000) }.to raise_error(ArgumentError)
    ensure
      s&.close
      s2&.close
    end

    it 'waits for readiness with wait_io' do
      a, b = UNIXSocket.pair
      f = spin { backend.wait_io(a, false); :readable }
      snooze
      expect(f.state).to eq(:waiting)
      b.write('x')
      expect(f.await).to eq(:readable)
      expect(backend.wait_io(a, true)).to be_truthy
    ensure
      a&.close
      b&.close
    end
  end

  describe 'splice and tee' do
    it 'splices between pipes, to EOF with a negative maxlen' do
      r1, w1 = IO.pipe
      r2, w2 = IO.pipe
      spin { backend.write(w1, 'x' * 10_000); w1.close }
      expect(backend.splice(r1, w2, -4096)).to eq(10_000)
      w2.close
      expect(backend.read(r2, +'', nil, true, 0).bytesize).to eq(10_000)
    ensure
      [r1, w1, r2, w2].each { |io| io.close unless io.closed? }
    end

    it 'tees without consuming and double-splices through an internal pipe' do
      r1, w1 = IO.pipe
      r2, w2 = IO.pipe
      backend.write(w1, 'teedata')
      expect(backend.tee(r1, w2, 100)).to eq(7)
      expect(backend.read(r2, +'', 7, true, 0)).to eq('teedata')
      expect(backend.read(r1, +'', 7, true, 0)).to eq('teedata')

      src_r, src_w = IO.pipe
      dst_r, dst_w = IO.pipe
      spin { backend.write(src_w, 'y' * 50_000); src_w.close }
      reader = spin { backend.read(dst_r, +'', nil, true, 0) }
      expect(backend.double_splice(src_r, dst_w)).to eq(50_000)
      dst_w.close
      expect(reader.await.bytesize).to eq(50_000)
    ensure
      [r1, w1, r2, w2, src_r, src_w, dst_r, dst_w].compact.each { |io| io.close unless io.closed? }
    end
  end

  describe 'timers' do
    it 'times out a block with a move-on value or an exception' do
      expect(backend.timeout(0.01, nil, :moved) { sleep 1 }).to eq(:moved)
      expect { backend.timeout(0.01, ArgumentError) { sleep 1 } }.to raise_error(ArgumentError)
      expect { backend.timeout(0.01, [IOError, 'late']) { sleep 1 } }.to raise_error(IOError, 'late')
      expect(backend.timeout(1, nil, :moved) { :done }).to eq(:done)
    end

    it 'unwinds nested timeouts to their own level' do
      res = backend.timeout(0.2, nil, :outer) do
        backend.timeout(0.01, nil, :inner) { sleep 1 }
      end
      expect(res).to eq(:inner)
      res = backend.timeout(0.01, nil, :outer) do
        backend.timeout(1, nil, :inner) { sleep 1 }
      end
      expect(res).to eq(:outer)
    end

    it 'never fires a cancelled timeout later' do
      backend.timeout(0.01, nil, :x) { :quick }
      expect(sleep(0.03)).to be_nil
    end

    it 'runs timer_loop on a fixed grid' do
      ticks = []
      f = spin { backend.timer_loop(0.01) { ticks << monotonic } }
      sleep 0.105
      f.stop
      expect(ticks.size).to be_between(4, 11)
    end
  end

  describe 'processes' do
    it 'waits for a child without blocking other fibers' do
      pid = Process.spawn('sleep 0.1; exit 42', out: File::NULL)
      ticks = 0
      ticker = spin { loop { ticks += 1; sleep 0.01 } }
      wpid, status = backend.waitpid(pid)
      ticker.stop
      expect(wpid).to eq(pid)
      expect(status).to eq(42 << 8)
      expect(ticks).to be >= 5
    end

    it 'raises for a pid that is not a child' do
      expect { backend.waitpid((2**22) + 12_345) }.to raise_error(SystemCallError)
    end
  end

  describe 'module functions' do
    it 'mirrors backend operations as Polyphony.backend_*' do
      r, w = pipe
      Polyphony.backend_write(w, 'mod')
      expect(Polyphony.backend_read(r, +'', 3, true, 0)).to eq('mod')
      expect(Polyphony.backend_sleep(0)).to be_nil
    end

    it 'passes blocks through, for every operation' do
      r, w = pipe
      spin { Polyphony.backend_write(w, 'ab'); w.close }
      chunks = []
      Polyphony.backend_read_loop(r, 1) { |c| chunks << c }
      expect(chunks).to eq(%w[a b])
      Polyphony::BACKEND_FUNCTIONS.each do |name|
        expect(Thread.current.backend).to respond_to(name)
      end
    end

    # A method defined with a block runs in a nested VM loop on the machine
    # stack, which each fiber waiting in it keeps and the GC scans at every
    # minor GC: these are plain methods (their iseq is the method's own).
    it 'are plain methods, not blocks' do
      Polyphony::BACKEND_FUNCTIONS.each do |name|
        iseq = RubyVM::InstructionSequence.of(Polyphony.method(:"backend_#{name}"))
        expect(iseq.label).to eq("backend_#{name}")
      end
    end
  end
end
