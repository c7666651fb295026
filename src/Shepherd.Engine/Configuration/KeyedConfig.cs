namespace Shepherd.Engine.Configuration;

/// <summary>
/// A key given in the configuration: inline (<c>apiKey</c>), from an environment variable
/// (<c>apiKeyEnv</c>) or from the first line of a file (<c>apiKeyFile</c>), so the file itself
/// need hold no secret.
/// </summary>
public abstract class KeyedConfig
{
    /// <summary>The key itself.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The environment variable holding the key.</summary>
    public string? ApiKeyEnv { get; set; }

    /// <summary>A file whose first line is the key.</summary>
    public string? ApiKeyFile { get; set; }

    /// <summary>The key, wherever it is kept; null when none is given or the variable is unset.</summary>
    public string? ReadKey()
    {
        if (ApiKeyEnv is not null)
        {
            return Environment.GetEnvironmentVariable(ApiKeyEnv);
        }

        return ApiKeyFile is not null ? File.ReadLines(ApiKeyFile).FirstOrDefault()?.Trim() : ApiKey;
    }

    /// <summary>Checks that the key is given at most once and that its file exists.</summary>
    protected void CheckKey(string where)
    {
        if ((ApiKey is not null ? 1 : 0) + (ApiKeyEnv is not null ? 1 : 0) + (ApiKeyFile is not null ? 1 : 0) > 1)
        {
            throw new ConfigException($"{where}: give the key once: apiKey, apiKeyEnv or apiKeyFile.");
        }

        if (ApiKeyFile is not null && !File.Exists(ApiKeyFile))
        {
            throw new ConfigException($"{where}.apiKeyFile: {ApiKeyFile} does not exist.");
        }
    }
}
