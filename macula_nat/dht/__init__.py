"""Sans-IO building blocks of a Mainline DHT node (BEP 5, 32, 43, 44).

Pure values and state machines with no sockets and no clocks: the KRPC codec (`krpc`), compact
contact encodings (`compact`), ids and the XOR metric (`node_id`), the routing table
(`routing_table`), write tokens (`tokens`), BEP 44 items (`mutable_item`) and their store
(`item_store`), announced peers (`peer_store`) and the iterative lookup (`lookup`). The DHT actor
drives them over a UDP socket.
"""

from .compact import Address, CompactError, NodeInfo
from .error_code import ErrorCode
from .item_store import ITEM_LIFETIME, ItemStore, PutRejected
from .krpc import (
    AnnouncePeer,
    Error,
    FindNode,
    Get,
    GetPeers,
    MalformedMessage,
    Message,
    Ping,
    Put,
    Query,
    Response,
    decode,
    encode,
    new_transaction_id,
)
from .lookup import ALPHA, Lookup, LookupStatistics
from .mutable_item import (
    ImmutableItem,
    Item,
    ItemError,
    MutableItem,
    immutable_target,
    mutable_target,
    signature_input,
)
from .node_id import NodeId
from .peer_store import PeerStore
from .routing_table import K, NodeState, Outcome, RoutingTable
from .tokens import WriteTokens

__all__ = [
    "ALPHA",
    "ITEM_LIFETIME",
    "Address",
    "AnnouncePeer",
    "CompactError",
    "Error",
    "ErrorCode",
    "FindNode",
    "Get",
    "GetPeers",
    "ImmutableItem",
    "Item",
    "ItemError",
    "ItemStore",
    "K",
    "Lookup",
    "LookupStatistics",
    "MalformedMessage",
    "Message",
    "MutableItem",
    "NodeId",
    "NodeInfo",
    "NodeState",
    "Outcome",
    "PeerStore",
    "Ping",
    "Put",
    "PutRejected",
    "Query",
    "Response",
    "RoutingTable",
    "WriteTokens",
    "decode",
    "encode",
    "immutable_target",
    "mutable_target",
    "new_transaction_id",
    "signature_input",
]
