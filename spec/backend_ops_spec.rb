# frozen_string_literal: true

require 'socket'

# The P2 backend operations: raw buffers, chain, sendv, sendmsg, recvmsg,
# splice_chunks, backend_verify_blocking_mode.
RSpec.describe 'Backend operations (P2)' do
  let(:pipe) { IO.pipe }
  after { pipe.each { |io| io.close unless io.closed? } }

  describe 'raw buffers' do
    it 'lends native memory to a block, readable and writable by the backend' do
      r, w = pipe
      result = Polyphony.__with_raw_buffer__(64) do |buf|
        expect(buf).to be_an(Integer)
        expect(Polyphony.__raw_buffer_size__(buf)).to eq(64)
        expect(Polyphony.__raw_buffer_get__(buf)).to eq('')
        Polyphony.__raw_buffer_set__(buf, 'hello raw')
        expect(backend.write(w, buf)).to eq(9)
        expect(r.readpartial(100)).to eq('hello raw')
        w << 'abcdef'
        expect(backend.read(r, buf, 4, false, 0)).to eq(4)
        expect(Polyphony.__raw_buffer_get__(buf)).to eq('abcd')
        expect(backend.read(r, buf, 10, false, -1)).to eq(2)
        expect(Polyphony.__raw_buffer_get__(buf)).to eq('abcdef')
        expect(Polyphony.__raw_buffer_get__(buf, 3)).to eq('abc')
        w.close
        expect(backend.read(r, buf, 10, false, 0)).to be_nil
        :block_value
      end
      expect(result).to eq(:block_value)
    end

    it 'works with sockets (send, recv) and refuses bad handles and sizes' do
      a, b = UNIXSocket.pair
      Polyphony.__with_raw_buffer__(16) do |buf|
        Polyphony.__raw_buffer_set__(buf, 'ping')
        expect(backend.send(a, buf, 0)).to eq(4)
        expect(backend.recv(b, buf, 16)).to eq(4)
        expect(Polyphony.__raw_buffer_get__(buf)).to eq('pingping')
        expect { Polyphony.__raw_buffer_set__(buf, 'x' * 17) }.to raise_error(RuntimeError)
        a.close
        expect(backend.recv(b, buf, 16)).to be_nil
      end
      stale = Polyphony.__with_raw_buffer__(8) { |h| h }
      expect { Polyphony.__raw_buffer_size__(stale) }.to raise_error(TypeError, /not a raw buffer handle/)
      expect { backend.write(pipe[1], stale) }.to raise_error(TypeError)
      expect { backend.read(pipe[0], stale, 1) }.to raise_error(TypeError)
      expect { Polyphony.__raw_buffer_get__(-1) }.to raise_error(TypeError)
      expect { Polyphony.__raw_buffer_get__('x') }.to raise_error(TypeError)
      expect { Polyphony.__with_raw_buffer__(-1) { } }.to raise_error(ArgumentError)
      expect { Polyphony.__with_raw_buffer__(1 << 40) { } }.to raise_error(ArgumentError)
      expect { Polyphony.__with_raw_buffer__(4) { raise IOError } }.to raise_error(IOError)
    ensure
      [a, b].each { |s| s&.close unless s&.closed? }
    end

    it 'leaves IO#write of an Integer as stock Ruby writes it' do
      r, w = pipe
      w.write(42, :sym)
      w.close
      expect(r.read).to eq('42sym')
    end
  end

  it 'chains writes, sends and splices, checking every op first' do
    r, w = pipe
    a, b = UNIXSocket.pair
    expect(backend.chain([:write, w, 'one '], [:send, a, 'two', 0])).to eq(3)
    expect(r.readpartial(10)).to eq('one ')
    expect(b.recv(10)).to eq('two')
    expect(backend.chain).to be_nil
    expect { backend.chain([:write, w, 'never'], [:bogus, 1]) }
      .to raise_error(RuntimeError, 'Invalid op specified or bad op arity')
    expect { backend.chain([:send, a, 'x']) }.to raise_error(RuntimeError)
    expect { backend.chain(:write) }.to raise_error(TypeError)
    expect { backend.chain([]) }.to raise_error(RuntimeError)
    w.close
    expect(r.read).to eq('')
  ensure
    [a, b].each { |s| s&.close }
  end

  it 'sends several strings as one with sendv' do
    a, b = UNIXSocket.pair
    expect(backend.sendv(a, %w[ab cd ef], 0)).to eq(6)
    expect(b.recv(10)).to eq('abcdef')
    expect(backend.sendv(a, [], 0)).to be_nil
    expect(Polyphony.backend_sendv(a, ['x'], 0)).to eq(1)
    expect { backend.sendv(a, 'x', 0) }.to raise_error(TypeError)
    expect { backend.sendv(nil, ['x'], 0) }.to raise_error(TypeError)
    expect { backend.sendmsg(a, nil, 0, nil, nil) }.to raise_error(TypeError)
    expect { backend.recvmsg(:nope, nil, 1, 0, 0, nil, nil) }.to raise_error(TypeError)
  ensure
    [a, b].each { |s| s&.close }
  end

  it 'sends and receives datagrams with sendmsg and recvmsg' do
    server = UDPSocket.new
    server.bind('127.0.0.1', 0)
    client = UDPSocket.new
    port = server.local_address.ip_port
    receiver = spin { backend.recvmsg(server, nil, 100, 0, 0, nil, nil) }
    snooze
    expect(backend.sendmsg(client, 'datagram', 0, Socket.sockaddr_in(port, '127.0.0.1'), nil)).to eq(8)
    data, addr, = receiver.await
    expect(data).to eq('datagram')
    expect(addr).to eq(['AF_INET', client.local_address.ip_port, '127.0.0.1', '127.0.0.1'])
    buf = +'head:'
    client.send('tail', 0, '127.0.0.1', port)
    expect(Polyphony.backend_recvmsg(server, buf, 100, -1, 0, nil, nil).first).to equal(buf)
    expect(buf).to eq('head:tail')
  ensure
    [server, client].each { |s| s&.close }
  end

  it 'returns nil from recvmsg at the end of a stream' do
    a, b = UNIXSocket.pair
    a.close
    expect(backend.recvmsg(b, nil, 10, 0, 0, nil, nil)).to be_nil
  ensure
    b&.close
  end

  it 'splices in chunks with a prefix, a postfix and parts around each chunk' do
    src_r, src_w = IO.pipe
    dest_r, dest_w = IO.pipe
    writer = spin do
      src_w << ('a' * 5)
      src_w.close
    end
    n = backend.splice_chunks(src_r, dest_w, '<', '>', ->(len) { "[#{len}:" }, ']', 2)
    writer.await
    dest_w.close
    expect(n).to eq(5)
    expect(dest_r.read).to eq('<[2:aa][2:aa][1:a]>')
  ensure
    [src_r, src_w, dest_r, dest_w].each { |io| io&.close unless io&.closed? }
  end

  it 'sets an fd blocking or not with backend_verify_blocking_mode' do
    require 'io/nonblock'
    r, = pipe
    expect(Polyphony.backend_verify_blocking_mode(r, true)).to equal(r)
    expect(r.nonblock?).to be(false)
    Polyphony.backend_verify_blocking_mode(r, false)
    expect(r.nonblock?).to be(true)
    expect { Polyphony.backend_verify_blocking_mode(nil, true) }.to raise_error(TypeError)
    expect { Polyphony.backend_verify_blocking_mode(IO.pipe.each(&:close)[0], true) }.to raise_error(IOError)
  end
end
