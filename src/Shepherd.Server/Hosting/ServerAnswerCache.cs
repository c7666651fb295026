using Microsoft.Extensions.Logging;
using Shepherd.Engine;
using Shepherd.Engine.Storage;

namespace Shepherd.Server.Hosting;

/// <summary>
/// The server's answer cache, opened when the engine starts: the configured file, a shared store's
/// database, or a file beside an embedded store's (<see cref="ServerCacheOptions.FileFor"/>). A
/// cache that cannot be opened is logged and left out (every request is sent); the engine's next
/// start tries again.
/// </summary>
internal sealed partial class ServerAnswerCache(ServerOptions settings, ShepherdEngineOptions engine, TimeProvider time, ILogger<ServerAnswerCache> logger) : IAsyncDisposable
{
    private AnswerCache? _cache;

    /// <summary>The cache, opened on the first call; null when the server keeps none or it cannot be opened.</summary>
    public async Task<AnswerCache?> OpenAsync(CancellationToken cancellationToken)
    {
        if (_cache is not null || settings.AnswerCache is not { } wanted)
        {
            return _cache;
        }

        try
        {
            _cache = await wanted.OpenAsync(engine, time, cancellationToken);
            LogOpened(_cache.Where);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Data.Common.DbException or ArgumentException)
        {
            LogUnusable(ex.Message);
        }

        return _cache;
    }

    public async ValueTask DisposeAsync()
    {
        if (_cache is { } cache)
        {
            await cache.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Answer cache: {Where}")]
    private partial void LogOpened(string where);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The answer cache cannot be used ({Reason}); every request is sent. The engine's next start tries again.")]
    private partial void LogUnusable(string reason);
}
