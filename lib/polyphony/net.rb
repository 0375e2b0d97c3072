# frozen_string_literal: true

require 'socket'
require 'openssl'

module Polyphony
  # Helpers to listen and connect, optionally over TLS.
  module Net
    class << self
      # A listening server on `host:port` (`host` defaults to 0.0.0.0):
      # a real `TCPServer` (its `accept`/`accept_loop` give `TCPSocket`s), or
      # an `OpenSSL::SSL::SSLServer` with `secure_context:`. Options:
      # `reuse_addr:`, `reuse_port:`, `dont_linger:`, `backlog:` (default
      # `Socket::SOMAXCONN`), `alpn_protocols:`.
      def tcp_listen(host = nil, port = nil, opts = {})
        host ||= '0.0.0.0'
        raise 'Port number not specified' unless port

        server = listening_server(host, port, opts)
        context = opts[:secure_context]
        return server unless context || opts[:secure]

        context ||= OpenSSL::SSL::SSLContext.new
        setup_alpn(context, opts[:alpn_protocols]) if opts[:alpn_protocols]
        OpenSSL::SSL::SSLServer.new(server, context)
      end

      # A connected `TCPSocket`, or with `secure:`/`secure_context:` an
      # `OpenSSL::SSL::SSLSocket` after its handshake, with SNI and the
      # hostname checked (`post_connection_check`).
      def tcp_connect(host, port, opts = {})
        socket = ::TCPSocket.new(host, port)
        return socket unless opts[:secure_context] || opts[:secure]

        secure_socket(socket, opts[:secure_context], host, opts)
      rescue StandardError
        socket&.close unless socket&.closed?
        raise
      end

      # Offers `protocols` and selects the first protocol of the client's
      # list that is among them.
      def setup_alpn(context, protocols)
        context.alpn_protocols = protocols
        context.alpn_select_cb = lambda do |peer_protocols|
          (peer_protocols & protocols).first
        end
      end

      private

      def listening_server(host, port, opts)
        ai = ::Addrinfo.tcp(host, port)
        socket = ::Socket.new(ai.afamily, ::Socket::SOCK_STREAM, 0)
        socket.reuse_addr if opts.fetch(:reuse_addr, true)
        socket.reuse_port if opts[:reuse_port]
        socket.dont_linger if opts[:dont_linger]
        socket.bind(ai)
        socket.listen(opts[:backlog] || ::Socket::SOMAXCONN)
        server = ::TCPServer.for_fd(socket.fileno)
        socket.autoclose = false
        server
      rescue StandardError
        socket&.close
        raise
      end

      def secure_socket(socket, context, host, opts)
        context ||= OpenSSL::SSL::SSLContext.new.tap { |c| c.set_params(verify_mode: OpenSSL::SSL::VERIFY_PEER) }
        context.alpn_protocols = opts[:alpn_protocols] if opts[:alpn_protocols]
        ssl = OpenSSL::SSL::SSLSocket.new(socket, context)
        ssl.sync_close = true
        ssl.hostname = host
        ssl.connect
        if context.verify_mode != OpenSSL::SSL::VERIFY_NONE && context.verify_hostname != false
          ssl.post_connection_check(host)
        end
        ssl
      end
    end
  end
end
