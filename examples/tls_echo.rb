# frozen_string_literal: true

# A TLS echo server and concurrent clients in one program, with a
# certificate generated on the spot.
#   ruby -Ilib examples/tls_echo.rb
require 'polyphony'

key = OpenSSL::PKey::RSA.new(2048)
cert = OpenSSL::X509::Certificate.new
cert.version = 2
cert.serial = 1
cert.subject = cert.issuer = OpenSSL::X509::Name.parse('/CN=localhost')
cert.public_key = key.public_key
cert.not_before = Time.now - 60
cert.not_after = Time.now + 3600
ef = OpenSSL::X509::ExtensionFactory.new
ef.subject_certificate = ef.issuer_certificate = cert
cert.add_extension(ef.create_extension('subjectAltName', 'DNS:localhost', false))
cert.sign(key, OpenSSL::Digest.new('SHA256'))

server_ctx = OpenSSL::SSL::SSLContext.new
server_ctx.cert = cert
server_ctx.key = key
server = Polyphony::Net.tcp_listen('127.0.0.1', 0, secure_context: server_ctx)
port = server.to_io.addr[1]

spin do
  server.accept_loop do |conn|
    spin do
      conn.read_loop { |data| conn.write(data) }
    ensure
      conn.close
    end
  end
end

store = OpenSSL::X509::Store.new
store.add_cert(cert)
client_ctx = OpenSSL::SSL::SSLContext.new
client_ctx.set_params(verify_mode: OpenSSL::SSL::VERIFY_PEER, cert_store: store)

clients = Array.new(5) do |i|
  spin do
    sock = Polyphony::Net.tcp_connect('localhost', port, secure_context: client_ctx)
    sock.puts("hello from client #{i}")
    reply = sock.gets
    sock.close
    reply
  end
end
Fiber.await(*clients).each { |reply| puts "echoed: #{reply}" }
