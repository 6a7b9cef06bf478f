//! A blocking rtnetlink socket and the requests the network plugins make with it.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_MULTIPART, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use tong_plugin_sdk::{PluginError, PluginResult};

/// A NETLINK_ROUTE socket bound to the network namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

/// The veth pair a container gets: `host` stays in the caller's namespace, on a bridge;
/// its peer is created directly inside the container's namespace as `container_name`.
pub struct VethPair<'a> {
    pub host: &'a str,
    pub bridge_index: u32,
    pub container_netns: &'a File,
    pub container_name: &'a str,
    pub container_mac: [u8; 6],
    pub mtu: u32,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// A socket inside the namespace `netns`: the calling thread enters it just to open
    /// the socket (a netlink socket keeps the namespace it was created in) and returns.
    pub fn open_in(netns: &File) -> PluginResult<Netlink> {
        let own = File::open("/proc/thread-self/ns/net")
            .map_err(|e| PluginError::os("open /proc/thread-self/ns/net", e))?;
        setns(netns.as_raw_fd())
            .map_err(|e| PluginError::os("setns into the container's network namespace", e))?;
        let opened = Netlink::open();
        setns(own.as_raw_fd())
            .map_err(|e| PluginError::os("setns back to the runtime's network namespace", e))?;
        opened.map_err(|e| PluginError::os("netlink socket in the container's namespace", e))
    }

    /// Sends one request and collects the replies until the ack, the end of a dump or
    /// (for a plain get) the single answer.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0)?;

        let mut replies = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < datagram.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = reply.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                let multipart = reply.header.flags & NLM_F_MULTIPART != 0;
                match reply.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(e.to_io()),
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_) => return Ok(replies),
                    NetlinkPayload::InnerMessage(m) => {
                        replies.push(m);
                        if !multipart && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn change(&mut self, message: RouteNetlinkMessage) -> io::Result<()> {
        self.request(message, NLM_F_ACK).map(drop)
    }

    fn create(&mut self, message: RouteNetlinkMessage) -> io::Result<()> {
        self.request(message, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)
            .map(drop)
    }

    /// The index of the interface `name`, or None when there is none.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(replies) => Ok(replies.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets the interface up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags |= LinkFlags::Up;
        message.header.change_mask |= LinkFlags::Up;
        self.change(RouteNetlinkMessage::SetLink(message))
    }

    /// Creates the bridge `name`, up, with the given MTU; EEXIST when it exists.
    pub fn add_bridge(&mut self, name: &str, mtu: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.flags |= LinkFlags::Up;
        message.header.change_mask |= LinkFlags::Up;
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::Mtu(mtu),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        self.create(RouteNetlinkMessage::NewLink(message))
    }

    /// Creates a veth pair in one request: the host end up and enslaved to the bridge,
    /// the peer born inside the container's namespace with its final name, MAC and MTU,
    /// so nothing needs moving or renaming afterwards (the caller sets it up there).
    pub fn add_veth(&mut self, pair: &VethPair) -> io::Result<()> {
        let mut peer = LinkMessage::default();
        peer.attributes = vec![
            LinkAttribute::IfName(pair.container_name.to_string()),
            LinkAttribute::Mtu(pair.mtu),
            LinkAttribute::Address(pair.container_mac.to_vec()),
            LinkAttribute::NetNsFd(pair.container_netns.as_raw_fd()),
        ];
        let mut host = LinkMessage::default();
        host.header.flags |= LinkFlags::Up;
        host.header.change_mask |= LinkFlags::Up;
        host.attributes = vec![
            LinkAttribute::IfName(pair.host.to_string()),
            LinkAttribute::Mtu(pair.mtu),
            LinkAttribute::Controller(pair.bridge_index),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
            ]),
        ];
        self.create(RouteNetlinkMessage::NewLink(host))
    }

    /// Deletes the interface; Ok when it is already gone.
    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        match self.change(RouteNetlinkMessage::DelLink(message)) {
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(()),
            other => other,
        }
    }

    /// Adds `address/prefix` to the interface; EEXIST when it is there.
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        let broadcast = Ipv4Addr::from(u32::from(address) | (u32::MAX >> prefix.min(32)));
        message.attributes = vec![
            AddressAttribute::Address(address.into()),
            AddressAttribute::Local(address.into()),
        ];
        if prefix < 31 {
            message
                .attributes
                .push(AddressAttribute::Broadcast(broadcast));
        }
        self.create(RouteNetlinkMessage::NewAddress(message))
    }

    /// Adds the IPv4 default route through `gateway`, out of interface `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Static;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.create(RouteNetlinkMessage::NewRoute(message))
    }
}

fn setns(fd: RawFd) -> io::Result<()> {
    // SAFETY: setns on a descriptor we hold open; it changes only this thread's namespace.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
