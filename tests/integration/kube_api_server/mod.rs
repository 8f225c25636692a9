//! The test Kubernetes API server (support/kube_api) proves itself: discovery, paging, writes,
//! apply and faults over raw HTTP, and the real kubectl against it.

mod apply;
mod discovery;
mod faults;
mod helpers;
mod kubectl;
mod paging;
mod writes;
