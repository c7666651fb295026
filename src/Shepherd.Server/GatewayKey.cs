using System.Security.Cryptography;
using System.Text;
using Shepherd.Engine.Upstreams;

namespace Shepherd.Server;

/// <summary>
/// A key clients present to the server. Each key is a tenant: what it uploads and creates
/// belongs to it alone. The server keeps only the key's SHA-256 to recognise it; the store never
/// holds the key at all.
/// </summary>
public sealed record GatewayKey
{
    /// <summary>A key given as itself (it is never written to a response or a log).</summary>
    public GatewayKey(Secret key, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(key);
        KeySha256 = Hash(key.Reveal());
        Empty = string.IsNullOrWhiteSpace(key.Reveal());
        Name = name;
    }

    /// <summary>A key given only by its SHA-256 (64 hex digits), so not even the configuration holds it.</summary>
    public GatewayKey(string keySha256, string? name)
    {
        ArgumentNullException.ThrowIfNull(keySha256);
        KeySha256 = keySha256.Length == 64 && keySha256.All(char.IsAsciiHexDigit)
            ? keySha256.ToLowerInvariant()
            : throw new ArgumentException("A key's SHA-256 is 64 hex digits.", nameof(keySha256));
        Name = name;
    }

    /// <summary>The SHA-256 of the key, lower-case hex.</summary>
    public string KeySha256 { get; }

    /// <summary>
    /// The tenant's name, recorded as the owner of its files and batches; without one, the owner is
    /// <c>key_</c> and the first 16 hex digits of the key's SHA-256.
    /// </summary>
    public string? Name { get; }

    /// <summary>
    /// What the key may do.
    /// <value>The default is <see cref="KeyScopes.Read"/> and <see cref="KeyScopes.Submit"/>.</value>
    /// </summary>
    public KeyScopes Scopes { get; init; } = KeyScopes.Read | KeyScopes.Submit;

    /// <summary>The tenant's limits; none by default.</summary>
    public TenantLimits Limits { get; init; } = TenantLimits.None;

    /// <summary>The owner recorded for this key's files and batches.</summary>
    public string Owner => Name ?? "key_" + KeySha256[..16];

    /// <summary>True for a key given as an empty string, which is refused.</summary>
    internal bool Empty { get; }

    internal static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}

/// <summary>What a gateway key may do.</summary>
[Flags]
public enum KeyScopes
{
    /// <summary>Nothing.</summary>
    None = 0,

    /// <summary>Read its tenant's files, batches and results (every GET, and estimates).</summary>
    Read = 1,

    /// <summary>Upload files, create, cancel and delete batches, retry failures.</summary>
    Submit = 2,

    /// <summary>Everything, for every tenant: sees and may cancel all tenants' batches and files.</summary>
    Admin = 4,
}

/// <summary>What one tenant may use; null is no limit.</summary>
/// <param name="RequestsPerMinute">API calls a minute (a smooth bucket holding one second's worth); more answer 429.</param>
/// <param name="OpenBatches">Batches not yet ended; a create beyond answers 429.</param>
/// <param name="QueuedItems">Requests of open batches not yet ended, new ones included; a create beyond answers 429.</param>
/// <param name="MaxFileBytes">The largest upload; larger answers 413.</param>
/// <param name="DailyBudgetUsd">
/// The most the tenant's realtime calls may cost in a day (UTC), in US dollars: each call holds
/// what it may cost while it runs, and a call that could take the day's spend past it answers 429.
/// </param>
public sealed record TenantLimits(double? RequestsPerMinute = null, long? OpenBatches = null, long? QueuedItems = null, long? MaxFileBytes = null, decimal? DailyBudgetUsd = null)
{
    /// <summary>No limits.</summary>
    public static TenantLimits None { get; } = new();
}
