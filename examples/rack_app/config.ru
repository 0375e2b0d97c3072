# frozen_string_literal: true

# A Rack app for the polyphony-http executable (or rackup -s polyphony):
#   RUBYLIB=lib exe/polyphony-http examples/rack_app/config.ru -p 9292 -w 2
#   curl http://127.0.0.1:9292/          curl -d 'some text' http://127.0.0.1:9292/echo
# Each request runs in its own fiber: the `sleep` below parks only it.
app = lambda do |env|
  case env['PATH_INFO']
  when '/echo'
    [200, { 'content-type' => 'text/plain' }, [env['rack.input'].read]]
  when '/slow'
    sleep 1
    [200, { 'content-type' => 'text/plain' }, ["slept a second in pid #{Process.pid}\n"]]
  else
    [200, { 'content-type' => 'text/plain' }, ["Hello from pid #{Process.pid}\n"]]
  end
end

run app
