# frozen_string_literal: true

require 'socket'
require 'openssl'

module Polyphony
  # The HTTP/1.1 server (lib/polyphony/http.rb, docs/http.md).
  module HTTP
    # A response method called out of turn (twice, or after the end).
    class Error < StandardError; end

    # An HTTP/1.1 server on a listening socket: one fiber per connection
    # (`Connection`), the handler called with each `Request` once its head
    # is in. With `tls:` (an `OpenSSL::SSL::SSLContext`) each connection's
    # handshake runs in its own fiber, so a slow or failed handshake holds
    # up, or closes, only that connection.
    class Server
      DEFAULTS = {
        max_line: 8192,           # request line (414 beyond)
        max_head: 65_536,         # whole head (431 beyond)
        max_headers: 100,         # header count (431 beyond)
        max_body: nil,            # body bytes (413 beyond); nil: no limit
        head_timeout: 30,         # s for a request head, from its first byte
        keep_alive_timeout: 60,   # s idle between requests
        body_timeout: 60,         # s a body read may stall
        handshake_timeout: 10,    # s for a TLS handshake
        graceful_timeout: 30,     # s `stop(graceful: true)` waits for requests
        park_after: 0.5,          # s idle before a connection gives up its fiber; nil: never
        heap_room: 100_000,       # objects `run` makes room for in Ruby's heap; 0: none
        logger: nil               # called with (message) on handler errors
      }.freeze

      attr_reader :options, :listener

      def initialize(listener, **opts, &handler)
        raise ArgumentError, 'no handler given' unless handler

        unknown = opts.keys - DEFAULTS.keys - %i[tls alpn_protocols]
        raise ArgumentError, "unknown options: #{unknown.join(', ')}" unless unknown.empty?

        @options = DEFAULTS.merge(opts)
        check_heap_room(@options[:heap_room])
        @handler = handler
        @listener, @tls = unwrap(listener, opts[:tls])
        Polyphony::Net.setup_alpn(@tls, opts[:alpn_protocols] || ['http/1.1']) if @tls
        @scheme = @tls ? 'https' : 'http'
        @connections = {}
        @parked = {}
        @stopping = false
      end

      def stopping? = @stopping

      # Serves until `stop`. Returns when every connection has ended.
      def run
        @fiber = Fiber.current
        @backend = Thread.current.backend
        make_heap_room(@options[:heap_room])
        watchdog = spin { watch_deadlines }
        @listener.accept_loop { |sock| start_connection(sock) }
      rescue IOError, Errno::EBADF
        raise unless @stopping
      ensure
        wait_for_connections
        watchdog&.stop
        close_parking
      end

      # Stops accepting. `graceful: true` (the default) ends idle
      # connections, lets requests in progress finish (their connections
      # close after the response) for up to `graceful_timeout` seconds, then
      # ends the rest; `graceful: false` ends everything at once.
      def stop(graceful: true)
        # A second stop may only make a graceful one immediate.
        return if @stopping && (graceful || !@graceful)

        @stopping = true
        @graceful = graceful
        @listener.close unless @listener.closed?
        end_connections(idle_only: graceful)
      end

      # Ends every connection (or those waiting between requests; parked
      # connections are idle).
      def end_connections(idle_only:)
        close_parked
        @connections.each do |fiber, conn|
          fiber.terminate unless idle_only && !(conn.is_a?(Connection) && conn.idle?)
        end
      end

      # Number of open connections (parked ones included).
      def connection_count = @connections.size + @parked.size

      # Number of parked connections.
      def parked_count = @parked.size

      # ---- parking --------------------------------------------------------
      #
      # A keep-alive connection idle for `park_after` seconds gives up its
      # fiber (whose stack pages are most of what an idle connection costs)
      # and waits in one epoll set (ext/polyphony/src/http/idle.rs) that the
      # parker fiber watches; its next bytes start a new fiber for it. Its
      # deadline is kept by the watchdog.

      # Parks `conn` (called from its fiber, which then ends): true, or
      # false if it cannot be parked (it then waits in its fiber).
      def park(conn)
        return false if @stopping

        HTTP.__idle_add__(parking.fileno, conn.fileno)
        @parked[conn.fileno] = conn
        @parker ||= @fiber.spin { watch_parked }
        true
      rescue SystemCallError, IOError
        false
      end

      def log_error(error, req = nil)
        msg = "polyphony-http: #{error.class}: #{error.message}" \
              "#{req ? " (#{req.method} #{req.path})" : ''}\n  #{(error.backtrace || []).first(5).join("\n  ")}"
        logger = @options[:logger]
        logger ? logger.call(msg) : warn(msg)
      end

      private

      def check_heap_room(room)
        return if room.nil? || (room.is_a?(Integer) && room >= 0)

        raise ArgumentError, "heap_room: not a count: #{room.inspect}"
      end

      # Grows Ruby's heap so that `slots` more objects fit in it, by making
      # that many throwaway objects at once. Ruby sizes its heap to what is
      # live plus a little room (it grows the heap only when a collection
      # leaves less than a fifth of it free), so a server with a small live
      # set and a few objects per request collects every few thousand
      # requests, each collection scanning every connection's fiber stack.
      # Ruby keeps most of a heap grown at start (it gives pages back only
      # at a major collection, down to two thirds free), and collects every
      # `slots` allocations or so (hello world: 6.7% of the CPU in the GC
      # before, 2.5% after; docs/http.md, "Heap room"). The default costs
      # about 9 MB on Ruby 3.1; 0 or nil: leave the heap.
      def make_heap_room(slots)
        return unless slots&.positive?

        room = slots - GC.stat(:heap_free_slots)
        # An Array, a head-sized String and a Hash: on Rubies with size
        # pools (3.2+) the slot sizes a request's objects take (40, 80 and
        # 160 bytes on 3.3); on 3.1 every object takes one 40-byte slot.
        Array.new(room / 3) { [String.new(capacity: 40), {}] } if room.positive?
        nil
      end

      def unwrap(listener, tls)
        return [listener.to_io, listener.instance_variable_get(:@ctx)] if listener.is_a?(OpenSSL::SSL::SSLServer)

        [listener, tls]
      end

      # The parking set (an epoll fd, owned by this IO).
      def parking
        @parking ||= IO.for_fd(HTTP.__idle_open__, autoclose: true)
      end

      # The parker: wakes each parked connection that has bytes (or a hang
      # up) in a new fiber, a child of the server's.
      def watch_parked
        loop do
          @backend.wait_io(@parking, false)
          HTTP.__idle_ready__(@parking.fileno, 256).each do |fd|
            conn = @parked.delete(fd)
            resume_connection(conn) if conn
          end
        end
      end

      def resume_connection(conn)
        connection_fiber(@fiber, conn) { conn.run(&@handler) }
      end

      # Parked connections past their deadline are closed.
      def expire_parked(time)
        expired = @parked.select { |_, conn| conn.park_deadline && time >= conn.park_deadline }
        expired.each_key { |fd| unpark_and_close(fd) }
      end

      def unpark_and_close(key)
        conn = @parked.delete(key) or return
        HTTP.__idle_delete__(@parking.fileno, key) if @parking && !@parking.closed?
        conn.close
      end

      def close_parked
        unpark_and_close(@parked.first[0]) until @parked.empty?
      end

      def close_parking
        close_parked
        if @parker
          @parker.stop
          Fiber.await(@parker)
        end
        @parking&.close unless @parking&.closed?
      end

      # The socket is listed until the fiber makes its Connection: a fiber
      # stopped before it even started still has its socket closed (see
      # `wait_for_connections`).
      def start_connection(sock)
        connection_fiber(Fiber.current, sock) { serve_connection(sock) }
      end

      # Runs the block in a new fiber, a child of `parent`, listed in the
      # connection table (under `entry`) until it ends.
      def connection_fiber(parent, entry)
        fiber = parent.spin do
          yield
        ensure
          @connections.delete(Fiber.current)
        end
        @connections[fiber] = entry
      end

      def serve_connection(sock)
        addr = HTTP.__accepted__(sock)
        sock = handshake(sock) if @tls
        return unless sock

        conn = Connection.new(self, sock, @options, addr, @scheme)
        @connections[Fiber.current] = conn
        conn.run(&@handler)
      rescue *Connection::GONE
        nil
      ensure
        close_unless_taken(sock, conn)
      end

      # A socket whose connection was stopped before it took the socket
      # over (during the handshake, say) is closed here, never leaked.
      def close_unless_taken(sock, conn)
        sock.close unless sock.nil? || sock.closed? || conn&.taken?
      end

      # The TLS session over `sock`, or nil (closed) if the handshake fails
      # or takes too long.
      def handshake(sock)
        ssl = OpenSSL::SSL::SSLSocket.new(sock, @tls)
        ssl.sync_close = true
        ok = move_on_after(@options[:handshake_timeout], with_value: false) do
          ssl.accept
          true
        end
        return ssl if ok

        ssl.close
        nil
      rescue OpenSSL::SSL::SSLError, SystemCallError, IOError
        sock.close unless sock.closed?
        nil
      end

      # The connections' read timeouts: one fiber checks every connection's
      # deadline a few times per shortest timeout (a timer per read would
      # cost more than the rest of a small request).
      def watch_deadlines
        timeouts = @options.values_at(:head_timeout, :keep_alive_timeout, :body_timeout).compact
        tick = (timeouts.min || 1.0) / 4.0
        tick = tick.clamp(0.02, 1.0)
        loop do
          sleep tick
          t = ::Process.clock_gettime(::Process::CLOCK_MONOTONIC)
          @connections.each_value { |conn| conn.expire(t) if conn.is_a?(Connection) }
          expire_parked(t) unless @parked.empty?
        end
      end

      def wait_for_connections
        fibers = @connections.keys
        return if fibers.empty?

        move_on_after(@options[:graceful_timeout]) { Fiber.await(fibers) } if @stopping && @graceful
        @connections.each_key(&:terminate)
        Fiber.await(@connections.keys) unless @connections.empty?
        close_unstarted
      end

      # Left in the table: fibers that ended before they started (their
      # `ensure` never ran), with the socket they were given.
      def close_unstarted
        @connections.each_value { |sock| sock.close if sock.is_a?(::IO) && !sock.closed? }
        @connections.clear
      end
    end

    class << self
      # Listens on `host:port` and serves `handler` (see `Server` for the
      # options; `workers: n` forks n processes sharing the listener, see
      # `Workers`). Returns when the server stops.
      def serve(host, port, workers: nil, reuse_port: false, **opts, &handler)
        listener = listen(host, port, reuse_port: reuse_port)
        if workers && workers > 1
          Workers.new(workers) { Server.new(listener, **opts, &handler) }.run
        else
          server = Server.new(listener, **opts, &handler)
          trap_stop(server)
          server.run
        end
      ensure
        listener&.close unless listener&.closed?
      end

      def listen(host, port, reuse_port: false)
        Polyphony::Net.tcp_listen(host || '0.0.0.0', port, reuse_addr: true, reuse_port: reuse_port)
      end

      # TERM and INT stop `server` gracefully; a second one ends every
      # connection at once.
      def trap_stop(server)
        %w[TERM INT].each do |sig|
          trap(sig) { server.stop(graceful: !server.stopping?) }
        end
      end
    end
  end
end
