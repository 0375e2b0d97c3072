# frozen_string_literal: true

# Starts a Polyphony::HTTP::Server on a free loopback port for one example
# (spec/http_server_spec.rb, spec/http_rack_spec.rb): `@port`, `@server`,
# and `@log` (what the server logged); stopped after the example.
module HTTPServerHelpers
  def self.included(group)
    group.after do
      if @server_fiber&.alive?
        @server.stop(graceful: false)
        @server_fiber.await
      end
    end
  end

  def start_http_server(**opts, &)
    @log = []
    listener = Polyphony::Net.tcp_listen('127.0.0.1', 0, reuse_addr: true)
    @port = listener.local_address.ip_port
    @server = Polyphony::HTTP::Server.new(listener, logger: ->(m) { @log << m }, **opts, &)
    @server_fiber = spin { @server.run }
    snooze
    @server
  end
end
