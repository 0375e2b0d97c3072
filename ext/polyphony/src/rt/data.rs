//! Rust values owned by Ruby objects (typed `T_DATA`), and [`Handle`]s to
//! them. The classes and their mark functions are declared by the bindings
//! (`ruby_api/`, with [`typed_data!`]); `core/` makes and finds its wrapped
//! values through [`wrap`] and [`get`] only.

use std::marker::PhantomData;
use std::ops::Deref;
use std::ptr::NonNull;

use magnus::{typed_data::Obj, value::ReprValue, TryConvert, TypedData};
use rb_sys::VALUE;

use super::{raw, ruby, val};

/// A borrowed Rust value inside a live Ruby object. The handle holds the
/// object, so the value lives at least as long as the handle: Ruby scans
/// every thread's and fiber's stack conservatively, and `Drop` keeps the
/// `VALUE` in memory until then (`rb_gc_guard!`). This is what replaces a
/// `&'static` to a garbage-collected object.
pub struct Handle<T> {
    obj: VALUE,
    ptr: NonNull<T>,
    _not_send: PhantomData<*const T>,
}

impl<T> Handle<T> {
    /// A handle to `ptr`, the value inside `obj`, from a previous
    /// [`get`] (`handle.value()` and `&*handle`).
    ///
    /// # Safety
    /// `obj` must be alive and `ptr` the address of its `T`.
    #[inline]
    pub unsafe fn from_parts(obj: VALUE, ptr: *const T) -> Handle<T> {
        Handle {
            obj,
            // SAFETY: the caller passes the address of a live value.
            ptr: unsafe { NonNull::new_unchecked(ptr as *mut T) },
            _not_send: PhantomData,
        }
    }

    /// The Ruby object that owns the value.
    #[inline]
    pub fn value(&self) -> VALUE {
        self.obj
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Handle {
            obj: self.obj,
            ptr: self.ptr,
            _not_send: PhantomData,
        }
    }
}

impl<T> Deref for Handle<T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: `ptr` points into the data of `obj`, which this handle
        // keeps alive (see the type's doc); typed data never moves.
        unsafe { self.ptr.as_ref() }
    }
}

impl<T> Drop for Handle<T> {
    #[inline]
    fn drop(&mut self) {
        rb_sys::rb_gc_guard!(self.obj);
    }
}

/// Wraps `value` in a new object of `T`'s class; returns the object.
pub fn wrap<T: TypedData>(value: T) -> VALUE {
    raw(ruby().obj_wrap(value).as_value())
}

/// The `T` inside `obj`, if `obj` is a `T` object.
#[inline]
pub fn get<T: TypedData>(obj: VALUE) -> Option<Handle<T>> {
    let o: Obj<T> = TryConvert::try_convert(val(obj)).ok()?;
    Some(Handle {
        obj,
        ptr: NonNull::from(&*o),
        _not_send: PhantomData,
    })
}

/// Declares the Ruby class of a Rust type (a `magnus::TypedData` impl):
/// `typed_data!(Type, "Ruby::Class", mark)` marks with `Type::mark(&self,
/// &mut dyn FnMut(VALUE))`; without `mark` the type holds no Ruby object.
/// Instances are freed as soon as they are unreachable (`free_immediately`:
/// `Drop` must not call Ruby).
macro_rules! typed_data {
    ($ty:ty, $class:literal $(, $mark:ident)?) => {
        // SAFETY: the data type below describes `$ty` exactly (magnus
        // builds it from the type), and `class` is the class made for it.
        unsafe impl magnus::TypedData for $ty {
            fn class(ruby: &magnus::Ruby) -> magnus::RClass {
                use magnus::{value::Lazy, Class, RClass};
                static CLASS: Lazy<RClass> = Lazy::new(|ruby| {
                    let class: RClass = ruby
                        .class_object()
                        .funcall("const_get", ($class,))
                        .expect(concat!($class, " is defined at init"));
                    class.undef_default_alloc_func();
                    class
                });
                ruby.get_inner(&CLASS)
            }

            fn data_type() -> &'static magnus::DataType {
                static DATA_TYPE: magnus::DataType =
                    magnus::typed_data::DataTypeBuilder::<$ty>::new(
                        match std::ffi::CStr::from_bytes_with_nul(concat!($class, "\0").as_bytes()) {
                            Ok(name) => name,
                            Err(_) => panic!("class name"),
                        },
                    )
                        $(.$mark())?
                        .size()
                        .free_immediately()
                        .build();
                &DATA_TYPE
            }
        }

        impl magnus::DataTypeFunctions for $ty {
            $(
            fn $mark(&self, marker: &magnus::gc::Marker) {
                <$ty>::mark(self, &mut |v| marker.mark($crate::rt::val(v)));
            }
            )?
        }
    };
}
pub(crate) use typed_data;
