# frozen_string_literal: true

require 'socket'

# The backend operations written in Ruby.
module Polyphony
  # The backend operations built in Ruby on the native ones (which are in
  # ext/polyphony/src/ruby_api/backend.rs): each parks only the calling
  # fiber.
  class Backend
    # The ops `chain` takes, and their arities (op name included).
    CHAIN_OPS = { write: 3, send: 4, splice: 4 }.freeze

    # Runs `[:write, io, str]`, `[:send, io, str, flags]` and
    # `[:splice, src, dest, maxlen]` in order; the last one's result (nil
    # for none). Every op is checked before any runs: an op that is not an
    # Array raises TypeError, an unknown op or arity RuntimeError "Invalid
    # op specified or bad op arity" (Polyphony's error).
    def chain(*ops)
      ops.each do |op|
        Kernel.raise TypeError, "expected an op Array, got #{op.class}" unless op.is_a?(Array)
        next if CHAIN_OPS[op.first] == op.size

        Kernel.raise RuntimeError, 'Invalid op specified or bad op arity'
      end
      ops.inject(nil) { |_, (name, *args)| __send__(name, *args) }
    end

    # Sends the Strings of `array` as one message; the bytes sent, or nil
    # for an empty array.
    def sendv(io, array, flags = 0)
      __socket__(io)
      Kernel.raise TypeError, "expected an Array, got #{array.class}" unless array.is_a?(Array)
      return nil if array.empty?

      send(io, array.map { |s| String.try_convert(s) || Kernel.raise(TypeError, 'expected Strings') }.join, flags)
    end

    # sendmsg(2) of `str` (to `dest_sockaddr`, a packed address or an
    # Addrinfo, if given); control messages are not supported (ignored).
    # The bytes sent.
    def sendmsg(io, str, flags = 0, dest_sockaddr = nil, _controls = nil)
      __socket__(io)
      str = String.try_convert(str) || Kernel.raise(TypeError, "expected a String, got #{str.class}")
      loop do
        n = io.sendmsg_nonblock(str, flags || 0, dest_sockaddr, exception: false)
        return n unless n == :wait_writable

        wait_io(io, true)
      end
    end

    # recvmsg(2) of at most `maxlen` bytes into `buffer` (at `pos`; a new
    # String if nil). `[buffer, addr, flags]`, `addr` as
    # `["AF_INET", port, ip, ip]`; nil at EOF (nothing received on a stream
    # socket). Control data is not supported.
    # rubocop:disable Metrics/ParameterLists (the signature is Polyphony's)
    def recvmsg(io, buffer, maxlen, pos = -1, flags = 0, _maxcontrollen = nil, _opts = nil)
      __socket__(io)
      Kernel.raise TypeError, "expected a String buffer, got #{buffer.class}" unless buffer.nil? || buffer.is_a?(String)
      r = __recvmsg__(io, maxlen, flags || 0)
      return nil unless r

      data, addr, rflags = r
      [__put__(buffer, data, pos), __addr_array__(addr), rflags]
    end

    # Splices `src` to `dest` in chunks of at most `chunk_size` bytes,
    # writing `prefix` first, `postfix` last, and `chunk_prefix` and
    # `chunk_postfix` around each chunk (a String, nil, or a callable given
    # the chunk's length). The bytes spliced.
    def splice_chunks(src, dest, prefix, postfix, chunk_prefix, chunk_postfix, chunk_size)
      r, w = IO.pipe
      write(dest, prefix) if prefix
      total = 0
      while (n = splice(src, w, chunk_size)).positive?
        __write_part__(dest, chunk_prefix, n)
        left = n
        left -= splice(r, dest, left) while left.positive?
        __write_part__(dest, chunk_postfix, n)
        total += n
      end
      write(dest, postfix) if postfix
      total
    ensure
      r&.close
      w&.close
    end
    # rubocop:enable Metrics/ParameterLists

    private

    # `io` if it is an open socket; TypeError or IOError otherwise.
    def __socket__(io)
      Kernel.raise TypeError, "expected a socket, got #{io.class}" unless io.is_a?(BasicSocket)
      Kernel.raise IOError, 'closed stream' if io.closed?

      io
    end

    # recvmsg_nonblock, waiting for readability; nil at the end of a stream.
    def __recvmsg__(io, maxlen, flags)
      loop do
        r = io.recvmsg_nonblock(maxlen, flags, exception: false)
        next wait_io(io, false) if r == :wait_readable
        return nil if r.nil? || (r[0].empty? && io.local_address.socktype == ::Socket::SOCK_STREAM)

        return r
      end
    end

    def __write_part__(dest, part, len)
      part = part.call(len) if part.respond_to?(:call)
      write(dest, part) if part
    end

    def __put__(buffer, data, pos)
      return data if buffer.nil?

      pos = buffer.bytesize if pos.nil? || pos.negative? || pos > buffer.bytesize
      buffer.force_encoding(Encoding::BINARY)
      buffer[pos..] = ''
      buffer << data
    end

    def __addr_array__(addr)
      return nil unless addr.is_a?(Addrinfo) && addr.ip?

      [addr.ipv6? ? 'AF_INET6' : 'AF_INET', addr.ip_port, addr.ip_address, addr.ip_address]
    end
  end

  class << self
    # Forces `io`'s fd into blocking (`true`) or non-blocking (`false`)
    # mode, remembering it in `@blocking_mode`. Returns io.
    def backend_verify_blocking_mode(io, blocking)
      require 'io/nonblock'
      Kernel.raise TypeError, "expected an IO, got #{io.class}" unless io.is_a?(IO)
      return io if io.instance_variable_get(:@blocking_mode) == blocking

      io.nonblock = !blocking
      io.instance_variable_set(:@blocking_mode, blocking)
      io
    end
  end
end
