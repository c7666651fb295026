using System.Security.Cryptography;
using System.Text;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Server;

/// <summary>
/// A key clients present to the server. Each key is a tenant: what it uploads and creates
/// belongs to it alone.
/// </summary>
/// <param name="Key">The key itself; it is never written to a response or a log.</param>
/// <param name="Name">
/// The tenant's name, recorded as the owner of its files and batches; without one, the owner is
/// <c>key_</c> and the first 16 hex digits of the key's SHA-256, so the store never holds the key.
/// </param>
public sealed record GatewayKey(Secret Key, string? Name = null)
{
    /// <summary>The owner recorded for this key's files and batches.</summary>
    public string Owner => Name ?? "key_" + Hash(Key.Reveal())[..16];

    internal static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
