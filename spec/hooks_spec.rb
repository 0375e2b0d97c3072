# frozen_string_literal: true

require 'open3'
require 'rbconfig'

# The protocol between the native core and the Ruby layer
# (lib/polyphony/core/hooks.rb, ext/polyphony/src/rt/hooks.rs).
RSpec.describe Polyphony::Hooks do
  def hooks_like(except: nil, arity: {})
    Module.new do
      %i[finalize_children fiber_body_error timeout_exception write stdlib_write
         io_wait_timeout block_timeout].each do |name|
        next if name == except

        params = Polyphony::Hooks.method(name).parameters
        params = Array.new(arity[name]) { |i| [:req, :"a#{i}"] } if arity.key?(name)
        args = params.map { |kind, n| kind == :rest ? "*#{n}" : n.to_s }.join(', ')
        module_eval("def self.#{name}(#{args}); end", __FILE__, __LINE__) # def self.write(io, *args); end
      end
    end
  end

  it 'is resolved when polyphony loads, so a missing hook fails the require' do
    expect(Polyphony.__resolve_hooks__(described_class)).to equal(described_class)
    expect { Polyphony.__resolve_hooks__(hooks_like(except: :write)) }
      .to raise_error(ArgumentError, /hook write is not defined/)
    expect { Polyphony.__resolve_hooks__(hooks_like(arity: { finalize_children: 2 })) }
      .to raise_error(ArgumentError, /finalize_children takes 2 arguments, expected 3/)
    expect { Polyphony.__resolve_hooks__(:nope) }.to raise_error(TypeError)
  end

  it 'keeps the real hooks after a refused table' do
    expect { Polyphony.__resolve_hooks__(hooks_like(except: :block_timeout)) }.to raise_error(ArgumentError)
    ensured = []
    parent = spin do
      spin do
        sleep
      ensure
        ensured << :child
      end
      snooze # the child starts (a child that never started has no ensure to run)
      :done
    end
    expect(parent.await).to eq(:done)
    expect(ensured).to eq([:child])
  end

  it 'calls each hook through the table' do
    # finalize_children: a child raising while it is shut down replaces the
    # parent's result and reaches the grandparent.
    parent = spin do
      spin do
        sleep
      rescue Polyphony::Terminate
        raise 'dying child'
      end
      snooze
      :parent_done
    end
    expect { parent.await }.to raise_error(RuntimeError, 'dying child')
    # timeout_exception: a spec given as [class, message].
    expect { Thread.current.backend.timeout(0.01, [IOError, 'late']) { sleep } }
      .to raise_error(IOError, 'late')
    # write and stdlib_write: IO#write off the native fast path.
    r, w = IO.pipe
    expect(w.write('a', 'b')).to eq(2)
    w.close
    expect(r.read).to eq('ab')
    r.close
  end

  it 'fails loudly when the Ruby layer does not define the hooks' do
    lib = File.expand_path('../lib', __dir__)
    script = <<~RUBY
      require 'polyphony/polyphony_ext'
      begin
        Polyphony.__resolve_hooks__(Module.new)
      rescue ArgumentError => e
        puts e.message
      end
    RUBY
    out, status = Open3.capture2e(RbConfig.ruby, '-I', lib, '-e', script)
    expect(status).to be_success
    expect(out).to eq("hook finalize_children is not defined\n")
  end
end
