// Serving one client connection: framing, payload bytes, replies.
//
// Reads a frame header, checks it against the limits before allocating anything, reads and
// parses the body, hands the request to Service, and writes the reply. Block payloads travel
// between the socket and the DRAM arena's slots directly (no intermediate buffer). Bad input is
// answered with an ErrorReply; input after which the stream cannot be trusted (a bad header,
// a rejected request that carries a large payload) also closes the connection. Either way the
// connection's leases are dropped when it ends, and other clients are unaffected.
#pragma once

// Boost 1.74's awaitable.hpp uses std::exchange without including <utility>.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdint>
#include <utility>

#include "request_mailbox.h"
#include "service.h"

namespace kvtier::server {

// Where requests that block on NVMe I/O run: `pool` for a client's own requests (gets that
// promote, write-through commits, removes), and `prefetch`, a strand on the same pool, for
// prefetch hints -- one at a time, so that hints never take every thread from demand reads.
struct NvmeExecutors {
  explicit NvmeExecutors(uint32_t threads) : pool(threads), prefetch(pool.get_executor()) {}
  boost::asio::thread_pool pool;
  boost::asio::strand<boost::asio::thread_pool::executor_type> prefetch;
};

// Each coroutine returns when the peer closes or misbehaves; it never throws. Requests that
// block on NVMe I/O run on `blocking` (null when the NVMe tier is off) while the coroutine
// waits, so that the network thread keeps serving its other connections; it must outlive the
// connection's io_context work (the server joins it before destroying the contexts). A Unix
// connection's request mailbox, once attached, joins `mailboxes`: the set of the network
// thread that runs the socket's io_context, which must outlive the coroutine.
boost::asio::awaitable<void> ServeConnection(boost::asio::local::stream_protocol::socket socket,
                                             Service* service, NvmeExecutors* blocking,
                                             uint64_t conn_id, MailboxSet* mailboxes);
boost::asio::awaitable<void> ServeConnection(boost::asio::ip::tcp::socket socket, Service* service,
                                             NvmeExecutors* blocking, uint64_t conn_id);

}  // namespace kvtier::server
