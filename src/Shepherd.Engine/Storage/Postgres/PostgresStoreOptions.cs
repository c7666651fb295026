using Npgsql;

namespace Shepherd.Engine.Storage;

/// <summary>Options of the PostgreSQL store that several nodes share.</summary>
public sealed class PostgresStoreOptions
{
    /// <summary>An Npgsql connection string, or a <c>postgres://user:password@host:port/database</c> url.</summary>
    public required string ConnectionString { get; set; }

    /// <summary>
    /// This node's name, unique among the nodes on one database. A node that restarts under the
    /// same name takes its own earlier leases back at once instead of waiting for them to lapse.
    /// <value>The default is the machine name and the process id.</value>
    /// </summary>
    public string NodeName { get; set; } = $"{Environment.MachineName}-{Environment.ProcessId}";

    /// <summary>
    /// How long a node may miss heartbeats before the others release its leases and take its roles.
    /// <value>The default is 15 seconds.</value>
    /// </summary>
    public TimeSpan NodeTimeout { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How many results one export page reads.
    /// <value>The default is 1,000.</value>
    /// </summary>
    public int ResultPageSize { get; set; } = 1000;

    /// <summary>True for a connection string that names PostgreSQL: a <c>postgres://</c> or <c>postgresql://</c> url, or <c>Host=…</c> pairs.</summary>
    public static bool Names(string store)
    {
        ArgumentNullException.ThrowIfNull(store);
        return store.StartsWith("postgres://", StringComparison.OrdinalIgnoreCase)
            || store.StartsWith("postgresql://", StringComparison.OrdinalIgnoreCase)
            || store.Contains("Host=", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The connection string as Npgsql reads it: a url is turned into key=value pairs.</summary>
    internal string NpgsqlConnectionString()
    {
        if (!ConnectionString.Contains("://", StringComparison.Ordinal))
        {
            return new NpgsqlConnectionStringBuilder(ConnectionString).ConnectionString;
        }

        if (!Uri.TryCreate(ConnectionString, UriKind.Absolute, out var url) || url.Scheme is not ("postgres" or "postgresql"))
        {
            throw new ArgumentException($"The store '{Redacted(ConnectionString)}' is not a valid postgres://user:password@host:port/database url.", nameof(ConnectionString));
        }

        var builder = new NpgsqlConnectionStringBuilder
        {
            Host = url.Host,
            Port = url.IsDefaultPort || url.Port < 0 ? 5432 : url.Port,
            Database = Uri.UnescapeDataString(url.AbsolutePath.TrimStart('/')) is { Length: > 0 } database ? database : null,
        };
        if (url.UserInfo.Length > 0)
        {
            var parts = url.UserInfo.Split(':', 2);
            builder.Username = Uri.UnescapeDataString(parts[0]);
            if (parts.Length == 2)
            {
                builder.Password = Uri.UnescapeDataString(parts[1]);
            }
        }

        foreach (var pair in url.Query.TrimStart('?').Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var (key, value) = pair.Split('=', 2) is [var k, var v] ? (k, v) : (pair, "");
            builder[Uri.UnescapeDataString(key).Replace('_', ' ')] = Uri.UnescapeDataString(value);
        }

        return builder.ConnectionString;
    }

    /// <summary>The connection string with any password left out, for messages.</summary>
    public static string Redacted(string connectionString) =>
        System.Text.RegularExpressions.Regex.Replace(connectionString, @"(?i)(password=)[^;]*|(://[^:/@]+:)[^@]*(@)", m => m.Groups[1].Success ? m.Groups[1].Value + "***" : m.Groups[2].Value + "***" + m.Groups[3].Value);

    /// <summary>A checked copy: throws <see cref="ArgumentException"/> saying what is wrong (an empty name, a timeout of zero, a connection string that cannot be read).</summary>
    public PostgresStoreOptions Validated()
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(ConnectionString);
        ArgumentException.ThrowIfNullOrWhiteSpace(NodeName);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(NodeTimeout, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(ResultPageSize, 1);
        _ = NpgsqlConnectionString();
        return new PostgresStoreOptions { ConnectionString = ConnectionString, NodeName = NodeName, NodeTimeout = NodeTimeout, ResultPageSize = ResultPageSize };
    }
}
