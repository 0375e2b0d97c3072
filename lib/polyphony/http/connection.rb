# frozen_string_literal: true

module Polyphony
  module HTTP
    # A client went away, or sent something the server cannot answer: the
    # connection ends (with `status` sent first when it is an Integer and no
    # response has started).
    class ConnectionError < StandardError
      attr_reader :status

      def initialize(status = nil, msg = nil)
        @status = status
        super(msg || (status ? "HTTP #{status}" : 'connection closed'))
      end
    end

    # One HTTP/1.x connection, served by one fiber: reads each request head
    # (the handler runs once all headers are in), hands the handler a
    # `Request` whose body is read only when the handler asks, writes its
    # response, and keeps the connection alive per HTTP/1.0 and 1.1 rules.
    # Requests are handled in order; pipelined bytes wait in the buffer.
    class Connection
      REJECT_HEADERS = { 'Content-Type' => 'text/plain' }.freeze
      # Body reads ask for up to this much. 16 KiB, not more: a 1 GiB upload
      # over loopback ran at 0.68 of a plain blocking copy with 64 KiB reads,
      # 0.78 with 32 KiB and 0.99 with 16 KiB (medians of 5 interleaved
      # runs, 2026-12-02; bench/README.md).
      READ_SIZE = 16_384
      # Head reads (and the buffer's first capacity): most heads fit, and an
      # idle connection keeps little.
      HEAD_READ_SIZE = 4096
      # Unread request body bytes drained to keep a connection alive; more
      # and the connection closes instead.
      MAX_DRAIN = 1 << 20
      # Errors that mean the peer is gone: the connection ends quietly.
      GONE = [IOError, SystemCallError, OpenSSL::SSL::SSLError, ConnectionError].freeze
      # What the idle read gives when the connection should give up its
      # fiber (`Server#park`).
      PARK = Object.new.freeze

      attr_reader :socket, :server, :remote_addr, :scheme

      def initialize(server, socket, opts, remote_addr, scheme)
        @server = server
        @socket = socket
        @opts = opts
        @remote_addr = remote_addr
        @scheme = scheme
        @buf = +''.b
        @hijacked = false
        @plain = socket.is_a?(::BasicSocket)
        @backend = Thread.current.backend
        @first = true
        @parked = false
        # Only a plain socket parks: a TLS session may hold decrypted bytes
        # that no readiness reports.
        @park_after = @plain && opts[:park_after]
      end

      # Whether the connection waits between requests (graceful stop ends
      # such connections at once): it has no request in hand.
      def idle? = @req.nil?

      # Serves requests until the client or the server ends the connection,
      # or until it parks (then `run` is called again, in a new fiber, when
      # the next request arrives).
      def run(&)
        @fiber = Fiber.current
        @parked = false
        serve_requests(&)
      rescue *GONE => e
        reject(e.status) if e.is_a?(ConnectionError) && e.status && !@req&.headers_sent?
      ensure
        close unless taken?
      end

      # Takes the connection over: the server no longer reads, writes or
      # closes it (Rack full hijack, protocol upgrades).
      def hijack
        @hijacked = true
        @socket
      end

      def hijacked? = @hijacked

      # Whether the connection gave up its fiber to wait in the server's
      # parking set (the server owns it until it wakes it or closes it).
      def parked? = @parked

      # Whether someone else owns the socket now (a hijacker, or the
      # server's parking set): the connection's fiber must not close it.
      def taken? = @hijacked || @parked

      # When a parked connection expires (its keep-alive or head deadline).
      attr_reader :park_deadline

      # The socket's fd (the parking set's key).
      def fileno = @socket.fileno

      # ---- reading ------------------------------------------------------

      # The next request (its head read past what the buffer holds), or nil
      # when the client closed the connection cleanly between requests (or
      # stayed idle past the keep-alive timeout: `expire`). The native loop
      # (`__serve__`) does the waiting between requests of a plain
      # connection; this is TLS's, and what a head read in pieces needs.
      def read_request(first)
        head = parse_buffered
        return build_request(head) if head

        if @buf.empty?
          wait = first ? @opts[:head_timeout] : @opts[:keep_alive_timeout]
          deadline = wait && (now + wait)
          return nil unless read_more(deadline, :idle)
        end
        build_request(read_head)
      end

      # The native loop waited `park_after` between requests and nothing
      # came: what the socket has now (bytes a read being cancelled got come
      # first, docs/io-semantics.md) is buffered (true); nil at EOF; PARK
      # when there is nothing and the server parked the connection until
      # its next bytes (or `@idle_deadline`). If it could not, the
      # connection goes on waiting in its fiber (true).
      def idle_passed
        # (Into the buffer, which is empty here: no 4 KB String made for
        # nothing each time a connection parks.)
        r = @socket.read_nonblock(HEAD_READ_SIZE, @buf, exception: false)
        return nil unless r
        return true unless r == :wait_readable

        @park_deadline = @idle_deadline
        # (An empty buffer that held a head keeps its capacity, 4 KB after
        # a native read: a parked connection gives it back.)
        @buf.clear
        return PARK if @server.park(self)

        @park_after = nil
        true
      end

      # The rest of a head whose first bytes are in: it must be complete
      # within the head timeout.
      def read_head
        deadline = now + @opts[:head_timeout] if @opts[:head_timeout]
        until (head = parse_buffered)
          read_more(deadline, :head) or raise ConnectionError
        end
        head
      end

      # Reads what the socket has into the buffer, waiting until `deadline`
      # at most (the server's watchdog calls `expire` then): true, or nil at
      # EOF.
      def read_more(deadline, phase)
        @phase = phase
        @deadline = deadline
        if !@plain
          @buf << @socket.readpartial(READ_SIZE, @tmp ||= String.new(encoding: Encoding::BINARY))
          true
        elsif phase == :body && @buf.empty?
          # Body bytes straight into the (empty) buffer, which goes to the
          # handler as it is.
          read_direct(READ_SIZE, @buf)
          true
        else
          # Head bytes appended to the buffer in place (a plain socket has
          # no Ruby-side read buffer to serve first).
          @backend.read(@socket, @buf, HEAD_READ_SIZE, false, @buf.bytesize) ? true : nil
        end
      rescue EOFError
        nil
      ensure
        @deadline = nil
      end

      # Called by the server's watchdog: ends the connection if it has been
      # waiting for bytes past its deadline. Idle between requests it closes
      # quietly; mid-head it answers 408 first.
      def expire(time)
        return unless @deadline && time >= @deadline

        @deadline = nil
        status = @phase == :head && !@buf.empty? ? 408 : nil
        @fiber&.raise(ConnectionError.new(status, "#{@phase} timeout"))
      end

      def parse_buffered
        return nil if @buf.empty?

        head = Polyphony::HTTP.__parse_head__(@buf, @opts[:max_line], @opts[:max_headers])
        case head
        when nil
          raise ConnectionError.new(431, 'request head too large') if @buf.bytesize > @opts[:max_head]

          nil
        when Integer then raise ConnectionError, head
        else
          raise ConnectionError.new(431, 'request head too large') if head[5] > @opts[:max_head]

          head
        end
      end

      def build_request(head)
        len = head[5]
        if len == @buf.bytesize
          @buf.clear
        else
          @buf = @buf.byteslice(len, @buf.bytesize - len)
        end
        body = head[6]
        limit = @opts[:max_body]
        raise ConnectionError.new(413, 'body too large') if limit && body > limit

        @req = nil
        @req = Request.new(self, head, body)
      end

      # Up to `max` body bytes from the buffer, else from the socket (one
      # read); nil at EOF. Waits at most the body timeout.
      def read_body_bytes(max)
        read_more(body_deadline, :body) or raise ConnectionError.new(nil, 'client went away mid-body') if @buf.empty?

        take = [max, @buf.bytesize].min
        if take == @buf.bytesize
          # The whole buffer: handed over as it is, no copy.
          chunk = @buf
          @buf = String.new(encoding: Encoding::BINARY)
          return chunk
        end
        chunk = @buf.byteslice(0, take)
        @buf = @buf.byteslice(take, @buf.bytesize - take)
        chunk
      end

      # Up to `max` body bytes into `buf` (a new String if nil): what the
      # buffer holds first, else straight from the socket into `buf` (no
      # String of its own, no second copy). Waits at most the body timeout.
      def read_body_into(max, buf)
        unless @buf.empty?
          piece = read_body_bytes(max)
          return buf ? buf.replace(piece) : piece
        end
        buf ||= String.new(encoding: Encoding::BINARY)
        max = READ_SIZE if max > READ_SIZE
        @phase = :body
        @deadline = body_deadline
        @plain ? read_direct(max, buf) : @socket.readpartial(max, buf)
      rescue EOFError
        raise ConnectionError.new(nil, 'client went away mid-body')
      ensure
        @deadline = nil
      end

      # One non-blocking read into `buf`, waiting for readability while
      # there is nothing (EOFError at EOF). Bulk bodies are usually there
      # already, and this copies them once (an io_uring read lands in a
      # buffer of its own, copied again).
      def read_direct(max, buf)
        loop do
          r = @socket.read_nonblock(max, buf, exception: false)
          return r if r.is_a?(String)
          raise EOFError unless r

          @backend.wait_io(@socket, false)
        end
      end

      # A line of a chunked body (size line or trailer), without its CRLF.
      def read_line(limit = 4096)
        until (i = @buf.index("\n"))
          raise ConnectionError.new(400, 'chunk line too long') if @buf.bytesize > limit

          read_more(body_deadline, :body) or raise ConnectionError
        end
        line = @buf.byteslice(0, i).chomp("\r")
        @buf = @buf.byteslice(i + 1, @buf.bytesize - i - 1)
        line
      end

      # Consumes `bytes` (the CRLF after a chunk's data, say); 400 if the
      # body has something else there.
      def expect_bytes(bytes)
        read_more(body_deadline, :body) or raise ConnectionError while @buf.bytesize < bytes.bytesize
        raise ConnectionError.new(400, 'bad chunk encoding') unless @buf.start_with?(bytes)

        @buf = @buf.byteslice(bytes.bytesize, @buf.bytesize - bytes.bytesize)
      end

      # ---- writing ------------------------------------------------------

      def write(*strings)
        @socket.write(*strings)
      end

      # An error response to a request that could not be served; the
      # connection closes after it.
      def reject(status)
        body = "#{HTTP.reason(status)}\n"
        write(HTTP.__response__(status, REJECT_HEADERS, body, Request::CLOSE))
      rescue *GONE
        nil
      end

      def close
        @socket.close unless @socket.closed?
      rescue *GONE
        nil
      end

      private

      # The native loop (`__serve__`, ext/polyphony/src/ruby_api/
      # http_connection.rs) serves a plain connection's requests without a
      # body; it returns here for what it leaves to Ruby (`:slow`: one
      # request served below, then back to it), for a wait that passed
      # `park_after` (`:idle`), and at the end (`:end`).
      def serve_requests(&handler)
        # `while`, not `loop`: a block called from C (Kernel#loop) would
        # keep a VM frame on the machine stack of every idle connection.
        while true # rubocop:disable Style/InfiniteLoop
          case @plain ? __serve__(handler) : :slow
          when :end then return
          when :idle then return unless on_after_idle?
          else return unless serve_next(&handler)
          end
        end
      end

      # After the native loop's `:idle`: whether the connection goes on in
      # its fiber (not at EOF, and not parked).
      def on_after_idle?
        r = idle_passed
        park if r.equal?(PARK)
        r == true
      end

      # Reads and serves one request: whether the connection goes on.
      def serve_next(&)
        return false unless (req = read_request(@first))

        @first = false
        keep = serve(req, &)
        @req = nil # nothing of a served request stays with an idle connection
        keep && !@server.stopping?
      end

      # The fiber ends; the server owns the connection until its next bytes.
      def park
        @parked = true
        @fiber = nil
      end

      # The handler raised `e` while the native loop served `req`: true if
      # it was answered here (logged, 500 if no response started), false if
      # `e` must go on (the peer went away, or not a StandardError).
      def handler_failed?(req, error)
        return false if !error.is_a?(StandardError) || GONE.any? { |c| error.is_a?(c) }

        @server.log_error(error, req)
        req.fail(500) unless req.headers_sent?
        true
      end

      def serve(req, &handler)
        begin
          handler.call(req)
        rescue StandardError => e
          raise unless handler_failed?(req, e)

          return false
        end
        return false if @hijacked

        req.finish
        req.keep_alive? && req.drain_body(MAX_DRAIN)
      end

      def now = ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)

      def body_deadline
        t = @opts[:body_timeout]
        t && (now + t)
      end
    end
  end
end
