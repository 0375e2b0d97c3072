# frozen_string_literal: true

module Polyphony
  # A fiber-aware FIFO queue: `shift` parks only the calling fiber. Pushing
  # from another thread wakes a fiber blocked in `shift` there.
  class Queue
    def initialize(items = nil)
      @items = items ? items.to_a : []
      @waiters = []
      @cap = nil
      @push_waiters = []
      @closed = false
    end

    def push(value)
      raise ClosedQueueError, 'queue closed' if @closed

      wait_for_room if @cap
      @items << value
      wake_one(@waiters)
      self
    end
    alias << push
    alias enq push

    def unshift(value)
      @items.unshift(value)
      wake_one(@waiters)
      self
    end

    def shift(*)
      while @items.empty?
        return nil if @closed

        wait_on(@waiters)
      end
      value = @items.shift
      wake_one(@push_waiters) if @cap
      value
    end
    alias pop shift
    alias deq shift

    def shift_all
      items = @items
      @items = []
      @push_waiters.dup.each { wake_one(@push_waiters) } if @cap
      items
    end

    def delete(value)
      @items.delete(value)
      self
    end

    def clear
      @items.clear
      self
    end

    def size
      @items.size
    end
    alias length size

    def empty?
      @items.empty?
    end

    def pending?
      !@waiters.empty?
    end

    def num_waiting
      @waiters.size
    end

    def cap(size)
      @cap = size
      self
    end

    def capped?
      !!@cap
    end

    def close
      @closed = true
      @waiters.dup.each { wake_one(@waiters) }
      self
    end

    def closed?
      @closed
    end

    def flush_waiters(value)
      @waiters.dup.each { @waiters.shift&.schedule(value) }
      self
    end

    private

    def wait_for_room
      wait_on(@push_waiters) while @items.size >= @cap
    end

    def wait_on(list)
      fiber = Fiber.current
      list << fiber
      Thread.current.backend.wait_event(true)
    ensure
      list.delete(fiber)
    end

    def wake_one(list)
      list.shift&.schedule
    end
  end
end
